/**
 * Each sink type's own keys, read and checked through the config reader's `Fields` (asking for a
 * key is what makes it known: ./config.ts then reports the rest as unknown for that type). The
 * keys every sink shares, the list and the file are read in ./config.ts.
 */
import type { Fields } from '../config/reader.js';
import { readHeaders, readSecretRef, type SecretRef } from '../config/secrets.js';
import { FACILITIES } from '../formats/syslog.js';
import {
  WEBHOOK_POLICY,
  type CommonSpec,
  type FileSinkSpec,
  type HttpSinkSpec,
  type NatsSinkSpec,
  type SyslogSinkSpec,
  type TlsFiles,
} from './spec.js';

export function readTls(r: Fields): TlsFiles | undefined {
  const t = r.obj('tls');
  if (!t) return undefined;
  const spec: TlsFiles = {
    caFile: t.str('ca_file'),
    certFile: t.str('cert_file'),
    keyFile: t.str('key_file'),
    servername: t.str('servername'),
    verify: t.bool('verify', true),
  };
  if (!!spec.certFile !== !!spec.keyFile) t.issue('', 'cert_file and key_file go together');
  t.unknown();
  return spec;
}

export function httpUrl(r: Fields, key = 'url'): string | undefined {
  const url = r.str(key, true);
  if (url === undefined) return undefined;
  let ok = false;
  try {
    ok = ['http:', 'https:'].includes(new URL(url).protocol);
  } catch {
    // reported below
  }
  if (!ok) return r.issue(key, 'expected an http:// or https:// URL');
  return url;
}

/** The keys that were given (a spec leaves out what the file did not say). */
export function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export function readSyslog(r: Fields, common: CommonSpec): SyslogSinkSpec | undefined {
  const protocol = r.oneOf('protocol', ['udp', 'tcp', 'tls'] as const, 'tls')!;
  const host = r.str('host', true);
  const port = r.int('port', 1, 65535) ?? (protocol === 'tls' ? 6514 : 514);
  const fac = r.raw('facility');
  let facility = FACILITIES.local0;
  if (typeof fac === 'string' && fac in FACILITIES) facility = FACILITIES[fac];
  else if (typeof fac === 'number' && Number.isInteger(fac) && fac >= 0 && fac <= 23) facility = fac;
  else if (fac !== undefined) r.issue('facility', 'expected a facility name (local0..local7, daemon, ...) or 0..23');
  const appName = r.str('app_name') ?? 'ctwatch';
  const hostname = r.str('hostname');
  const structuredData = r.bool('structured_data', true);
  const pen = r.int('pen', 1, 2 ** 31);
  const maxMessageBytes = r.int('max_message_bytes', 480, 1 << 20);
  const timeoutMs = r.duration('timeout', { positive: true, max: 3600 }) ?? 30_000;
  const tls = readTls(r);
  if (tls && protocol !== 'tls') r.issue('tls', `only applies to protocol: tls (this sink uses ${protocol})`);
  if (!host) return undefined;
  return {
    ...common, type: 'syslog', protocol, host, port, facility, appName, hostname, structuredData, pen,
    maxMessageBytes, timeoutMs, tls: tls ?? (protocol === 'tls' ? { verify: true } : undefined),
  };
}

export function readHttp(r: Fields, type: HttpSinkSpec['type'], common: CommonSpec): HttpSinkSpec | undefined {
  const url = httpUrl(r);
  let token: SecretRef | undefined;
  let username: string | undefined;
  if (type === 'elasticsearch') {
    username = r.str('username');
    token = username ? readSecretRef(r, 'password_file', 'password_env') : readSecretRef(r, 'api_key_file', 'api_key_env');
  } else {
    token = readSecretRef(r, 'token_file', 'token_env');
  }
  if (type === 'splunk_hec' && !token) r.missing('token_file', 'a HEC token is required (token_file or token_env)');
  const spec: Partial<HttpSinkSpec> = {
    gzip: r.bool('gzip', type !== 'webhook'),
    timeoutMs: r.duration('timeout', { positive: true, max: 3600 }) ?? (type === 'webhook' ? WEBHOOK_POLICY.timeoutMs : 30_000),
    headers: readHeaders(r) ?? {},
    tls: readTls(r),
  };
  if (type === 'splunk_hec') {
    spec.index = r.str('index');
    spec.source = r.str('source');
    spec.sourcetype = r.str('sourcetype');
    spec.fields = r.stringMap('fields');
  }
  if (type === 'elasticsearch') {
    spec.index = r.str('index', true);
    spec.op = r.oneOf('op', ['create', 'index'] as const, 'create');
    spec.pipeline = r.str('pipeline');
  }
  if (!url) return undefined;
  return { ...common, ...spec, type, url, token, username } as HttpSinkSpec;
}

function natsUrl(r: Fields): string[] | undefined {
  const list = r.has('servers') ? r.stringList('servers', true) : r.has('url') ? r.stringList('url', true) : r.missing('servers', 'give servers: [nats://HOST:4222, ...] (or url:)');
  if (!list) return undefined;
  const key = r.has('servers') ? 'servers' : 'url';
  if (list.length === 0) return r.issue(key, 'expected at least one nats:// or tls:// URL');
  for (const u of list) {
    let ok = false;
    try {
      const url = new URL(u);
      ok = ['nats:', 'tls:'].includes(url.protocol) && url.username === '' && url.password === '';
    } catch {
      // reported below
    }
    if (!ok) return r.issue(key, `${JSON.stringify(u.replace(/\/\/[^@/]*@/, '//'))}: expected nats://HOST:PORT or tls://HOST:PORT, credentials in password_file/token_file/creds_file`);
  }
  return list;
}

export function readNats(r: Fields, common: CommonSpec): NatsSinkSpec | undefined {
  const servers = natsUrl(r);
  const host = r.str('host');
  if (host !== undefined && !/^[A-Za-z0-9_-]+$/.test(host)) r.issue('host', 'expected one subject token: letters, digits, - and _');
  const subjectPrefix = r.str('subject_prefix') ?? 'ctwatch';
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(subjectPrefix)) r.issue('subject_prefix', 'expected subject tokens (letters, digits, - and _) separated by dots');
  const user = r.str('user');
  const password = readSecretRef(r, 'password_file', 'password_env');
  const token = readSecretRef(r, 'token_file', 'token_env');
  const credsFile = r.str('creds_file');
  if (user && !password) r.issue('user', 'needs password_file or password_env');
  if (password && !user) r.issue('password_file', 'needs user');
  if ([user, token, credsFile].filter(Boolean).length > 1) r.issue('', 'give one of user + password_file, token_file or creds_file');
  const tls = readTls(r);
  const timeoutMs = r.duration('timeout', { positive: true, max: 3600 }) ?? 10_000;
  const maxInflight = r.int('max_inflight', 1, 100_000) ?? 1000;
  const st = r.obj('stream');
  let stream: NatsSinkSpec['stream'];
  if (st) {
    stream = {
      name: st.str('name') ?? 'CTWATCH',
      create: st.bool('create', false),
      ...defined({
        replicas: st.int('replicas', 1, 5),
        maxAgeMs: st.duration('max_age', { positive: true }),
        maxBytes: st.size('max_bytes'),
        maxMsgs: st.int('max_msgs', 1, Number.MAX_SAFE_INTEGER),
        duplicateWindowMs: st.duration('duplicate_window', { positive: true, max: 86_400 }),
        storage: st.oneOf('storage', ['file', 'memory'] as const),
      }),
    };
    if (!/^[A-Za-z0-9_-]+$/.test(stream.name)) st.issue('name', 'expected letters, digits, - and _');
    st.unknown();
  }
  if (!servers) return undefined;
  return {
    ...common, type: 'nats', servers, host, subjectPrefix, user, password, token, credsFile,
    tls: tls ?? (servers.some((u) => u.startsWith('tls:')) ? { verify: true } : undefined), timeoutMs, maxInflight, stream,
  };
}

export function readFile_(r: Fields, common: CommonSpec): FileSinkSpec | undefined {
  const path = r.str('path', true);
  const rot = r.obj('rotate');
  const rotateBytes = rot?.size('max_bytes');
  const rotateIntervalMs = rot?.duration('interval', { min: 1 });
  rot?.unknown();
  const gzip = r.bool('gzip', true);
  const maxFiles = r.int('max_files', 1, 100_000);
  if (!path) return undefined;
  return { ...common, type: 'file', path, rotateBytes, rotateIntervalMs, gzip, maxFiles };
}
