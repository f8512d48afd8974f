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
// in microseconds since boot, from which this module computes the stall share since
// its previous collection (psi_<resource>_<kind>_stall).
//
// It needs one grant: the host's /proc/pressure, read-only. It reads the files
// through wasi:filesystem, the way every WebAssembly guest does I/O.
//
// Params:
//   proc_pressure  where the PSI files are (default "/proc/pressure")
//   resources      space-separated subset of "cpu io memory" (default all three)
//   group          the metric group (default "pressure")

import { log } from 'wasmond:metric/log@0.1.0';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import { parsePressure } from './psi.js';

// PSI files are one or two short lines; a read is capped here.
const MAX_FILE_BYTES = 4096n;
const KINDS = ['some', 'full'];
const AVERAGES = ['avg10', 'avg60', 'avg300'];

let config = null;
// Last `total` seen per "<resource>_<kind>", with the time it was read (ms).
let lastTotals = new Map();
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
  return parsePressure(readText(`${config.dir}/${resource}`));
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
      `Share of time ${kind === 'some' ? 'some' : 'all'} tasks stalled on ${resource} since the last collection`));
  }
  return result;
}

export function init(params) {
  preopens = getDirectories();
  config = {
    dir: param(params, 'proc_pressure', '/proc/pressure').replace(/\/+$/, ''),
    resources: param(params, 'resources', 'cpu io memory').split(/\s+/).filter((r) => r),
    group: param(params, 'group', 'pressure'),
  };
  lastTotals = new Map();
  const descriptors = [];
  for (const resource of config.resources) {
    if (!['cpu', 'io', 'memory'].includes(resource)) {
      throw `param resources: unknown resource ${JSON.stringify(resource)}`;
    }
    // Reading now reports a missing grant or a kernel without PSI at once; old
    // kernels have no "full" line for cpu.
    const kinds = KINDS.filter((kind) => sample(resource)[kind] !== undefined);
    descriptors.push(...descriptorsFor(resource, kinds));
  }
  log('info', `pressure stall information of ${config.resources.join(', ')} from ${config.dir}`);
  return descriptors;
}

// The stall share since the previous call for this line; 0 on the first call.
function stallSince(key, total) {
  const now = performance.now();
  const last = lastTotals.get(key);
  lastTotals.set(key, { total, now });
  if (last === undefined || now <= last.now || total < last.total) return 0;
  const stalledMs = (total - last.total) / 1000;
  return Math.min(100, (100 * stalledMs) / (now - last.now));
}

export function handler(name) {
  const match = /^psi_(cpu|io|memory)_(some|full)_(avg10|avg60|avg300|stall)$/.exec(name);
  if (config === null || match === null || !config.resources.includes(match[1])) {
    throw `unknown metric ${name}`;
  }
  const [, resource, kind, field] = match;
  const line = sample(resource)[kind];
  if (line === undefined) throw `${config.dir}/${resource} has no "${kind}" line`;
  const value = field === 'stall' ? stallSince(`${resource}_${kind}`, line.total) : line[field];
  return { tag: 'float', val: value };
}

export function cleanup() {
  for (const [descriptor] of preopens) descriptor[Symbol.dispose]();
  preopens = [];
  config = null;
}
