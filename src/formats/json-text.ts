/**
 * JSON text written straight, byte for byte what JSON.stringify writes (same escaping, members
 * left out when undefined), for encoders of records that come by the thousand per second:
 * ecs-text.ts builds its lines from these pieces instead of an object and a stringify.
 */
/**
 * JSON.stringify escapes '"', '\\', control characters and lone surrogates: a string with none of
 * them is its own JSON body. Surrogates of either kind count, JSON.stringify knows pairs from lone
 * ones. A loop, not a regex: the strings are short, and a regex call costs more than the scan.
 */
export function needsEscape(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return true;
  }
  return false;
}

/**
 * A member as JSON.stringify writes it, or '' where it leaves it out. `key` comes written out with
 * its comma and colon (`,"port":`): one concatenation per member instead of three.
 */
export function member(key: string, v: unknown): string {
  switch (typeof v) {
    case 'number':
      return Number.isFinite(v) ? key + v : key + 'null';
    case 'string':
      // quotes joined to the value first: a short value makes one flat piece with them (see isoFromMicros)
      return needsEscape(v) ? key + JSON.stringify(v) : key + ('"' + v + '"');
    case 'boolean':
      return v ? key + 'true' : key + 'false';
    case 'undefined':
    case 'function':
    case 'symbol':
      return '';
    default: {
      const t = JSON.stringify(v);
      return t === undefined ? '' : key + t;
    }
  }
}

/**
 * An object from its members as member() writes them (each with its leading comma). The first
 * comes apart from the rest: cutting the comma off the whole text would flatten it, a copy per
 * object, where cutting it off one short member costs next to nothing.
 */
export function object(first: string, rest = ''): string {
  if (first !== '') return `{${first.slice(1)}${rest}}`;
  return rest === '' ? '{}' : `{${rest.slice(1)}}`;
}
