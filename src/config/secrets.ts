/**
 * The one secrets policy, for the rules file and the sinks file alike: a secret (a token, a
 * password, an API key, a credential header) comes from a file or an environment variable, never
 * from the config file itself (which ends up in backups, diffs and bug reports), and every form it
 * takes on the wire is scrubbed from errors before they reach `lastError` or a log line.
 */
import type { Fields } from './reader.js';
import { FileRefused } from '../util/safe-file.js';

/** Where a secret comes from. */
export interface SecretRef {
  file?: string;
  env?: string;
}

/** Keys that would hold a secret inline; refused wherever they appear. */
const INLINE_SECRET_KEYS = ['token', 'password', 'api_key', 'secret'];

/**
 * Header names whose values are credentials: Authorization and its proxy twin, cookies, and the
 * vendor spellings of keys and tokens (X-Api-Key, X-Auth-Token, X-Splunk-Token, ...).
 */
export function isCredentialHeader(name: string): boolean {
  return /auth|token|secret|passw|api[-_]?key|cookie|session|signature|credential/i.test(name);
}

/**
 * A header value that is a credential whatever its header is called: an HTTP authentication
 * scheme followed by its credentials (`Basic dXNlcjpw…`, `Bearer …`, `Splunk …`), or a JWT.
 */
export function looksLikeCredential(value: string): boolean {
  return (
    /^\s*(basic|bearer|token|splunk|apikey|api-key|digest|negotiate|hmac|aws4-hmac-sha256)\s+\S{4,}/i.test(value) ||
    /\beyJ[\w-]{4,}\.eyJ[\w-]{4,}\./.test(value)
  );
}

/**
 * Reads `fileKey` / `envKey` (one of them, not both) and refuses the inline spellings.
 * `label` names the pair in the reason ("token_file or token_env").
 */
export function readSecretRef(f: Fields, fileKey: string, envKey: string): SecretRef | undefined {
  const file = f.str(fileKey);
  const env = f.str(envKey);
  if (file && env) f.issue(fileKey, `give ${fileKey} or ${envKey}, not both`);
  // the reason never quotes the value: it is the secret
  if (INLINE_SECRET_KEYS.some((k) => f.value(k) !== undefined)) f.issue('', `secrets are not accepted inline: use ${fileKey} or ${envKey}`);
  return file || env ? { file, env } : undefined;
}

/** A header value: plain text, or a secret to read at start-up. */
export type HeaderValue = string | SecretRef;

/**
 * `headers:` — plain values for ordinary headers; credential headers only as `{ file: PATH }` or
 * `{ env: NAME }` (the file or variable holds the whole value, e.g. `Bearer abc…`).
 */
export function readHeaders(f: Fields, key = 'headers'): Record<string, HeaderValue> | undefined {
  const m = f.obj(key);
  if (!m) return undefined;
  const out: Record<string, HeaderValue> = {};
  for (const name of m.keys()) {
    const v = m.raw(name);
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const ref = m.obj(name);
      if (!ref) continue;
      const file = ref.str('file');
      const env = ref.str('env');
      ref.unknown();
      if (!!file === !!env) ref.issue('', 'give the value as { file: PATH } or { env: NAME }');
      else out[name] = { file, env };
    } else if (typeof v === 'string' || typeof v === 'number') {
      if (isCredentialHeader(name) || looksLikeCredential(String(v))) {
        m.reader.fail(m.value(name), m.at(name), `secrets are not accepted inline: give it as { file: PATH } or { env: NAME }`);
      } else {
        out[name] = String(v);
      }
    } else {
      m.issue(name, 'expected a string, or { file: PATH } / { env: NAME } for a secret');
    }
  }
  return out;
}

/** Why a file could not be read: the refusal when it was unsafe (a FIFO, a device, a planted link), else the errno. */
export function cannotRead(path: string, err: unknown): string {
  if (err instanceof FileRefused && (err.code.startsWith('ERR_') || err.code === 'ELOOP' || err.code === 'ENOTDIR')) return `cannot read ${path}: ${err.reason}`;
  return `cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)})`;
}

/**
 * Reads a secret now (at start-up, so a missing file fails then). Returns the value, or a reason
 * that names the file or variable (never the value).
 */
export function resolveSecret(ref: SecretRef, env: NodeJS.ProcessEnv, readFile: (path: string) => Buffer): { value?: string; reason?: string } {
  if (ref.env) {
    const v = env[ref.env]?.trim();
    return v ? { value: v } : { reason: `environment variable ${ref.env} is not set` };
  }
  let buf: Buffer;
  try {
    buf = readFile(ref.file!);
  } catch (err) {
    return { reason: cannotRead(ref.file!, err) };
  }
  const v = buf.toString('utf8').trim();
  return v ? { value: v } : { reason: `${ref.file} is empty` };
}

/**
 * Every form of a secret that can come back in an error: as is, URL-encoded (a receiver quoting
 * the request line), and for a header value `Scheme credentials` the credentials alone — and, for
 * Basic, the user:password pair both base64-encoded and decoded.
 */
export function secretForms(secret: string): string[] {
  const out = new Set<string>([secret, encodeURIComponent(secret)]);
  const m = /^(\w+)\s+(\S+)$/.exec(secret);
  if (m) {
    out.add(m[2]);
    if (m[1].toLowerCase() === 'basic') {
      const plain = Buffer.from(m[2], 'base64').toString('utf8');
      if (plain.includes(':')) {
        out.add(plain);
        out.add(plain.slice(plain.indexOf(':') + 1));
      }
    }
  }
  return [...out];
}

/**
 * The forms of a Basic user:password credential (the password, the pair, its base64). Without a
 * password the user is the secret (`https://TOKEN@host`, as several services hand out tokens).
 */
export function basicForms(user: string, password: string): string[] {
  return [
    ...secretForms(password || user),
    ...secretForms(`Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`),
    ...(password ? [] : [`${user}:`]),
  ];
}

/**
 * Every form of every credential a set of request headers carries: those marked secret (read
 * from a file or the environment), those named like one, and values that look like one.
 */
export function headerSecrets(headers: Record<string, string>, marked: readonly string[] = []): string[] {
  const out: string[] = [];
  for (const [name, v] of Object.entries(headers)) {
    if (v && (marked.includes(name) || isCredentialHeader(name) || looksLikeCredential(v))) out.push(...secretForms(v.trim()));
  }
  return out;
}

/** The credentials a URL carries: its userinfo, and query values named like a credential (`?api_key=`). */
export function urlSecrets(url: URL): string[] {
  const out: string[] = [];
  if (url.username || url.password) out.push(...basicForms(decodeURIComponent(url.username), decodeURIComponent(url.password)));
  for (const [name, v] of url.searchParams) if (v && isCredentialHeader(name)) out.push(...secretForms(v));
  return out;
}

/** Replaces every occurrence of each secret (longest first, so a part never leaves a tail). */
export function scrub(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  const list = [...new Set(secrets.filter((s): s is string => !!s && s.length >= 4))].sort((a, b) => b.length - a.length);
  for (const s of list) out = out.split(s).join('[REDACTED]');
  return out;
}
