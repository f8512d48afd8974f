// Parsing of one /proc/pressure/<resource> file. Pure: no I/O, so it is tested
// natively with `node --test guest-modules/js-pressure/psi.test.js`.

const FIELDS = ['avg10', 'avg60', 'avg300', 'total'];

// Returns { some: { avg10, avg60, avg300, total }, full: {...} } with the lines the
// file has; throws a message naming the line when a line is malformed.
export function parsePressure(text) {
  const result = {};
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const [kind, ...pairs] = line.trim().split(/\s+/);
    if (kind !== 'some' && kind !== 'full') throw `unexpected PSI line: ${line}`;
    const values = {};
    for (const pair of pairs) {
      const [key, text] = pair.split('=');
      const value = Number(text);
      if (!FIELDS.includes(key) || text === undefined || text === '' || !Number.isFinite(value)) {
        throw `bad PSI field ${JSON.stringify(pair)} in: ${line}`;
      }
      values[key] = value;
    }
    for (const field of FIELDS) {
      if (values[field] === undefined) throw `PSI line lacks ${field}: ${line}`;
    }
    result[kind] = values;
  }
  return result;
}
