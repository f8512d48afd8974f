// Unit tests of the PSI parser, run natively: node --test guest-modules/js-pressure/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePressure } from './psi.js';

test('parses some and full lines', () => {
  const psi = parsePressure(
    'some avg10=1.53 avg60=0.87 avg300=0.42 total=3155112\n' +
      'full avg10=0.00 avg60=0.10 avg300=0.06 total=2768391\n',
  );
  assert.deepEqual(psi.some, { avg10: 1.53, avg60: 0.87, avg300: 0.42, total: 3155112 });
  assert.equal(psi.full.avg60, 0.1);
});

test('an old kernel without a full line gives only some', () => {
  const psi = parsePressure('some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n');
  assert.equal(psi.full, undefined);
  assert.equal(psi.some.total, 0);
});

test('rejects an unknown line kind', () => {
  assert.throws(() => parsePressure('half avg10=0 avg60=0 avg300=0 total=0'), /unexpected PSI line/);
});

test('rejects a field that is not a number', () => {
  assert.throws(() => parsePressure('some avg10=x avg60=0 avg300=0 total=0'), /bad PSI field/);
});

test('rejects a line missing a field', () => {
  assert.throws(() => parsePressure('some avg10=0 avg60=0 avg300=0'), /lacks total/);
});

test('the real file of this machine parses, when it has one', async () => {
  const { readFile } = await import('node:fs/promises');
  let text;
  try {
    text = await readFile('/proc/pressure/cpu', 'utf8');
  } catch {
    return; // a kernel without PSI: nothing more to check here
  }
  assert.ok(parsePressure(text).some.total >= 0);
});
