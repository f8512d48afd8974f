// js-pressure: the kernel's pressure stall information (PSI) as wasmond metrics,
// written in JavaScript and built with componentize-js.
//
// /proc/pressure/{cpu,io,memory} say how much of the time tasks were stalled
// waiting for that resource:
//
//     some avg10=1.53 avg60=0.87 avg300=0.42 total=3155112
//     full avg10=0.00 avg60=0.00 avg300=0.00 total=0
//
// "some": at least one task stalled; "full": all non-idle tasks stalled at once.
// The averages are percentages over 10 s, 60 s and 300 s; `total` is the stall time
// in microseconds since boot, from which this module computes the stall share between
// its last two samples (psi_<resource>_<kind>_stall).
//
// It needs one grant: the host's /proc/pressure, read-only. It reads the files
// through wasi:filesystem, the way every WebAssembly guest does I/O.
//
// Params:
//   proc_pressure  where the PSI files are (default "/proc/pressure")
//   resources      space-separated subset of "cpu io memory" (default all three)
//   group          the metric group (default "pressure")
//   min_poll_ms    a file is re-read at most this often, so that the metrics of one
//                  collection share one sample and one read (default 1000)

import { log } from 'wasmond:metric/log@0.1.0';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import { parsePressure } from './psi.js';

// PSI files are one or two short lines; a read is capped here.
const MAX_FILE_BYTES = 4096n;
const KINDS = ['some', 'full'];
const AVERAGES = ['avg10', 'avg60', 'avg300'];

let config = null;
// The last sample of each resource: { psi, at } (at: performance.now() of the read).
let samples = new Map();
// Per "<resource>_<kind>": the sample the stall share was last computed from, and it.
let lastStalls = new Map();
// The directories the host granted, opened once: [descriptor, guest path].
let preopens = [];

function param(params, name, fallback) {
  let value = fallback;
  for (const [key, v] of params) {
    if (key === name) value = v; // the last one wins, as in gmond
  }
  return value;
}

// The preopen holding `path`, and the path relative to it.
function resolve(path) {
  let best = null;
  for (const [descriptor, root] of preopens) {
    const prefix = root.endsWith('/') ? root : root + '/';
    if (path.startsWith(prefix) && (best === null || prefix.length > best.prefix.length)) {
      best = { descriptor, prefix };
    }
  }
  if (best === null) {
    throw `cannot read ${path}: no granted directory holds it (grant ${path.slice(0, path.lastIndexOf('/'))} read-only)`;
  }
  return { dir: best.descriptor, relative: path.slice(best.prefix.length) };
}

function errorCode(error) {
  return error && error.payload !== undefined ? error.payload : String(error);
}

function readText(path) {
  const { dir, relative } = resolve(path);
  let file;
  try {
    file = dir.openAt({ symlinkFollow: false }, relative, {}, { read: true });
  } catch (error) {
    throw `cannot open ${path}: ${errorCode(error)}`;
  }
  try {
    // /proc files report size 0, so read up to the cap rather than stat first.
    const [bytes] = file.read(MAX_FILE_BYTES, 0n);
    return new TextDecoder().decode(bytes);
  } catch (error) {
    throw `cannot read ${path}: ${errorCode(error)}`;
  } finally {
    // Resources left to the garbage collector would pile up in the host's table.
    file[Symbol.dispose]();
  }
}

function sample(resource) {
  const now = performance.now();
  const cached = samples.get(resource);
  if (cached !== undefined && now - cached.at < config.minPollMs) return cached;
  const fresh = { psi: parsePressure(readText(`${config.dir}/${resource}`)), at: now };
  samples.set(resource, fresh);
  return fresh;
}

function describe(name, units, format, description) {
  return {
    name,
    valueType: 'float',
    units,
    slope: 'both',
    format,
    timeMax: 60,
    description,
    groups: [config.group],
    extra: [],
  };
}

function descriptorsFor(resource, kinds) {
  const result = [];
  for (const kind of kinds) {
    for (const average of AVERAGES) {
      result.push(describe(`psi_${resource}_${kind}_${average}`, '%', '%.2f',
        `Share of time ${kind === 'some' ? 'some' : 'all'} tasks stalled on ${resource}, ${average.slice(3)} s average`));
    }
    result.push(describe(`psi_${resource}_${kind}_stall`, '%', '%.2f',
      `Share of time ${kind === 'some' ? 'some' : 'all'} tasks stalled on ${resource} between the last two samples`));
  }
  return result;
}

export function init(params) {
  preopens = getDirectories();
  config = {
    dir: param(params, 'proc_pressure', '/proc/pressure').replace(/\/+$/, ''),
    resources: param(params, 'resources', 'cpu io memory').split(/\s+/).filter((r) => r),
    group: param(params, 'group', 'pressure'),
    minPollMs: Number(param(params, 'min_poll_ms', '1000')),
  };
  if (!Number.isFinite(config.minPollMs) || config.minPollMs < 0) {
    throw 'param min_poll_ms: not a number of milliseconds';
  }
  samples = new Map();
  lastStalls = new Map();
  const descriptors = [];
  for (const resource of config.resources) {
    if (!['cpu', 'io', 'memory'].includes(resource)) {
      throw `param resources: unknown resource ${JSON.stringify(resource)}`;
    }
    // Reading now reports a missing grant or a kernel without PSI at once; old
    // kernels have no "full" line for cpu.
    const kinds = KINDS.filter((kind) => sample(resource).psi[kind] !== undefined);
    descriptors.push(...descriptorsFor(resource, kinds));
  }
  log('info', `pressure stall information of ${config.resources.join(', ')} from ${config.dir}`);
  return descriptors;
}

// The stall share between the last two samples of this line; 0 until there are two.
// Asked again before a new sample, it repeats its value.
function stallShare(key, total, at) {
  const last = lastStalls.get(key);
  if (last !== undefined && last.at === at) return last.value;
  let value = 0;
  if (last !== undefined && at > last.at && total >= last.total) {
    const stalledMs = (total - last.total) / 1000;
    value = Math.min(100, (100 * stalledMs) / (at - last.at));
  }
  lastStalls.set(key, { total, at, value });
  return value;
}

export function handler(name) {
  const match = /^psi_(cpu|io|memory)_(some|full)_(avg10|avg60|avg300|stall)$/.exec(name);
  if (config === null || match === null || !config.resources.includes(match[1])) {
    throw `unknown metric ${name}`;
  }
  const [, resource, kind, field] = match;
  const { psi, at } = sample(resource);
  const line = psi[kind];
  if (line === undefined) throw `${config.dir}/${resource} has no "${kind}" line`;
  const value = field === 'stall' ? stallShare(`${resource}_${kind}`, line.total, at) : line[field];
  return { tag: 'float', val: value };
}

export function cleanup() {
  for (const [descriptor] of preopens) descriptor[Symbol.dispose]();
  preopens = [];
  config = null;
}
