#!/usr/bin/env node
/**
 * Writes schema/v1/*.json, the JSON Schemas (draft 2020-12) of every record kind ctwatch writes
 * (src/recording/schema.ts, docs/schema.md) plus `doctor --json`. Each file stands alone (shared
 * parts are copied in), so a consumer can take one file without the others. Run it after changing
 * a record's fields: `node scripts/schema-v1.mjs`; test/unit/schema-files.test.ts fails when the
 * files are not what this writes.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const OUT = join(dirname(fileURLToPath(import.meta.url)), '..', 'schema', 'v1');
const BASE = 'https://github.com/ctwatch/ctwatch/schema/v1/';

const TCP_STATES = ['NONE', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE', 'SYN_SENT2'];
const STATUS_FLAGS = ['EXPECTED', 'SEEN_REPLY', 'ASSURED', 'CONFIRMED', 'SRC_NAT', 'DST_NAT', 'SEQ_ADJUST', 'SRC_NAT_DONE', 'DST_NAT_DONE', 'DYING', 'FIXED_TIMEOUT', 'TEMPLATE', 'UNTRACKED', 'HELPER', 'OFFLOAD', 'HW_OFFLOAD'];

const u = (max) => ({ type: 'integer', minimum: 0, ...(max !== undefined ? { maximum: max } : {}) });
const count = { type: 'integer', minimum: 0 };
const U16 = 65535;
const U32 = 4294967295;
const micros = { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$', description: 'RFC 3339, UTC, microseconds' };
const nanos = { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{9}Z$', description: 'RFC 3339, UTC, nanoseconds' };
const address = { type: 'string', minLength: 2, pattern: '^[0-9A-Fa-f.:]+$', description: 'dotted IPv4 or RFC 5952 IPv6' };
const family = { enum: ['ipv4', 'ipv6'] };
const proto = { type: 'string', pattern: '^([a-z][a-z0-9-]*|\\d{1,3})$', description: 'tcp, udp, icmp, icmpv6, sctp, udplite, dccp, gre, igmp, ... or the protocol number as text' };
const icmp = { type: 'object', required: ['type', 'code', 'id'], additionalProperties: false, properties: { type: u(255), code: u(255), id: u(U16) } };
const counters = { type: 'object', required: ['packets', 'bytes'], additionalProperties: false, properties: { packets: count, bytes: count } };
const state = { anyOf: [{ enum: TCP_STATES }, { type: 'string', pattern: '^STATE_\\d+$' }], description: 'TCP state' };
const netns = { type: 'string', description: 'the namespace given with --netns; absent for ctwatch\'s own' };
const head = (event) => ({ v: { const: 1 }, event: typeof event === 'string' ? { const: event } : { enum: event }, time: micros });

function file(name, title, schema, description) {
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: `${BASE}${name}.json`,
    title,
    ...(description ? { description } : {}),
    ...schema,
  };
}

// conntrack events: written by writeEvent, field for field (closed)
function conntrack(kind) {
  const tuple = { src: address, dst: address, sport: u(U16), dport: u(U16), icmp };
  return file(kind, `ctwatch v1 "${kind}" conntrack event`, {
    type: 'object',
    required: ['v', 'event', 'time', 'id', 'family', 'proto', 'src', 'dst', 'reply', 'status'],
    additionalProperties: false,
    properties: {
      ...head(kind),
      id: u(U32),
      family,
      proto,
      ...tuple,
      reply: { type: 'object', required: ['src', 'dst'], additionalProperties: false, properties: { ...tuple, packets: count, bytes: count } },
      state,
      status: { type: 'array', items: { enum: STATUS_FLAGS }, uniqueItems: true },
      mark: u(U32),
      zone: u(U16),
      timeout: u(U32),
      orig: counters,
      start: nanos,
      end: nanos,
      netns,
    },
  }, 'docs/schema.md, "Conntrack events"');
}

const processInfo = {
  type: 'object',
  required: ['pid', 'comm'],
  properties: {
    pid: u(), comm: { type: 'string' }, tid: u(), uid: u(), user: { type: 'string' }, exe: { type: 'string' },
    cgroup: { type: 'string' }, unit: { type: 'string' }, container: { type: 'string' }, pod: { type: 'string' },
    qos: { type: 'string' }, side: { enum: ['origin', 'listener'] },
  },
  description: 'open: fields are added within v1',
};

const flow = file('flow', 'ctwatch v1 "flow" record (one per connection that left the table)', {
  type: 'object',
  required: ['v', 'event', 'time', 'id', 'family', 'proto', 'src', 'dst', 'begin', 'duration', 'clock', 'preexisting', 'assured', 'replied', 'reason'],
  additionalProperties: false,
  properties: {
    ...head('flow'),
    id: u(U32), family, proto, src: address, dst: address, sport: u(U16), dport: u(U16), icmp,
    begin: micros,
    duration: { type: 'number', minimum: 0 },
    open: { type: 'number', minimum: 0 },
    clock: { enum: ['kernel', 'collector'] },
    preexisting: { type: 'boolean' },
    state,
    assured: { type: 'boolean' },
    replied: { type: 'boolean' },
    orig: counters,
    reply: counters,
    reason: { enum: ['destroy', 'resync', 'shutdown'] },
    mark: u(U32), zone: u(U16), netns,
    process: { anyOf: [processInfo, { type: 'null' }] },
    unattributed: { type: 'string' },
    nat: {
      type: 'object', additionalProperties: false, minProperties: 1,
      properties: { src: address, sport: u(U16), dst: address, dport: u(U16) },
      description: 'the translated side of a NATed flow, from the reply tuple',
    },
  },
}, 'docs/schema.md, "flow"');

// the rest go through JSON.stringify of the record object: open (new optional fields within v1)
const overflow = file('overflow', 'ctwatch v1 "overflow" record', {
  type: 'object', required: ['v', 'event', 'time', 'overflows'],
  properties: { ...head('overflow'), overflows: count, netns },
}, 'docs/schema.md, "overflow"');

const snapshotDone = file('snapshot_done', 'ctwatch v1 "snapshot_done" record', {
  type: 'object', required: ['v', 'event', 'time', 'entries'],
  properties: { ...head('snapshot_done'), entries: count, failed: { type: 'integer', minimum: 1, description: 'errno' }, netns },
}, 'docs/schema.md, "snapshot_done"');

const resync = file('resync', 'ctwatch v1 "resync" record', {
  type: 'object', required: ['v', 'event', 'time', 'vanished', 'appeared', 'entries', 'overflows', 'rcvbuf'],
  properties: {
    ...head('resync'), vanished: count, appeared: count, entries: count, overflows: count, rcvbuf: count,
    failed: { type: 'integer', minimum: 1, description: 'errno' }, netns,
  },
}, 'docs/schema.md, "resync"');

const rate = { type: 'number', minimum: 0 };
const rates = { new1: rate, new10: rate, new60: rate, end1: rate, end10: rate, end60: rate };
const ratesRequired = Object.keys(rates);
const stateCounts = { type: 'object', additionalProperties: count };
const share = { type: 'number', minimum: 0, maximum: 1 };
const keyChurn = {
  type: 'object', required: ['key', ...ratesRequired, 'live'],
  properties: {
    key: { type: 'string' }, ...rates, live: count, states: stateCounts,
    backend: { type: 'string' }, backends: count,
    lifetimeP50: { type: 'number', minimum: 0 }, lifetimeP99: { type: 'number', minimum: 0 }, shortLived: share, error: count,
  },
};
const keyList = { type: 'array', items: keyChurn };
/** rows carry what their key is made of beside it, so no reader parses a key (docs/schema.md "churn") */
const withParts = (parts) => ({ type: 'array', items: { ...keyChurn, properties: { ...keyChurn.properties, ...parts } } });
const destinationList = withParts({ family, dst: address, dport: u(U16), proto });
const processList = withParts({ pid: u(), comm: { type: 'string' } });
const groupList = withParts({ unit: { type: 'string' }, container: { type: 'string' }, pod: { type: 'string' }, qos: { type: 'string' }, podName: { type: 'string' }, podNamespace: { type: 'string' } });
const nullableCount = { anyOf: [count, { type: 'null' }] };

const churnBody = {
  type: 'object',
  required: ['v', 'event', 'time', 'overall', 'live', 'states', 'shortLived', 'table', 'destinations', 'sources', 'protocols'],
  properties: {
    ...head('churn'),
    netns,
    overall: { type: 'object', required: ratesRequired, properties: rates },
    live: count,
    states: stateCounts,
    shortLived: share,
    table: {
      type: 'object', required: ['entries', 'max', 'fill', 'growth', 'timeToFull', 'kernel'],
      properties: {
        entries: nullableCount, max: nullableCount,
        fill: { anyOf: [{ type: 'number', minimum: 0 }, { type: 'null' }] },
        growth: { type: 'number' },
        timeToFull: { anyOf: [{ type: 'number', minimum: 0 }, { type: 'null' }] },
        kernel: { type: 'object', additionalProperties: count },
      },
    },
    destinations: destinationList, sources: keyList, protocols: keyList, processes: processList, groups: groupList, zones: keyList, unattributed: keyList,
    unreplied: {
      type: 'object', required: ['total', 'stale', 'staleAfter', 'destinations', 'complete'],
      properties: {
        total: count, stale: count, staleAfter: { type: 'number', minimum: 0 },
        destinations: {
          type: 'array',
          items: {
            type: 'object', required: ['key', 'unreplied', 'stale', 'dnat', 'oldestAge'],
            properties: { key: { type: 'string' }, unreplied: count, stale: count, dnat: count, oldestAge: { type: 'number', minimum: 0 } },
          },
        },
        complete: { type: 'boolean' },
      },
    },
    snat: {
      type: 'object', required: ['range', 'pairs', 'complete'],
      properties: {
        range: { oneOf: [{ type: 'null' }, { type: 'object', required: ['low', 'high'], properties: { low: { type: 'integer', minimum: 1, maximum: 65535 }, high: { type: 'integer', minimum: 1, maximum: 65535 }, from: { enum: ['nft rule', 'kernel default'] } } }] },
        pairs: {
          type: 'array',
          items: {
            type: 'object', required: ['key', 'src', 'destination', 'ports', 'share'],
            properties: { key: { type: 'string' }, src: { type: 'string' }, destination: { type: 'string' }, ports: { type: 'integer', minimum: 0 }, share: { oneOf: [{ type: 'null' }, { type: 'number', minimum: 0 }] } },
          },
        },
        complete: { type: 'boolean' },
      },
    },
  },
};
const churn = file('churn', 'ctwatch v1 "churn" record (record --churn, replay, stats --json)', churnBody, 'docs/schema.md, "churn"');

const keyRate = { type: 'object', required: ['key', 'rate'], properties: { key: { type: 'string' }, rate: { type: 'number' } } };
function alertFile(kind) {
  return file(kind, `ctwatch v1 "${kind}" record (watch -o, webhooks, exec hooks, SIEM sinks)`, {
    type: 'object',
    required: ['v', 'event', 'time', 'rule', 'severity', 'subject', 'since', 'message', 'values', 'top', 'hint'],
    properties: {
      ...head(kind),
      rule: { type: 'string' },
      severity: { enum: ['info', 'warning', 'critical'] },
      subject: { type: 'string' },
      since: micros,
      message: { type: 'string' },
      values: { type: 'object', additionalProperties: { type: ['number', 'string', 'null'] } },
      top: {
        type: 'object', required: ['destinations', 'sources'],
        properties: {
          destinations: { type: 'array', items: keyRate },
          sources: { type: 'array', items: keyRate },
          processes: { type: 'array', items: { ...keyRate, properties: { ...keyRate.properties, pid: u(), comm: { type: 'string' } } } },
        },
      },
      hint: { type: 'string' },
      netns,
    },
  }, 'docs/alerts.md');
}

const doctor = file('doctor', 'ctwatch v1 `doctor --json` output', {
  type: 'object',
  required: ['v', 'event', 'time', 'netns', 'status', 'checks'],
  properties: {
    v: { const: 1 },
    event: { const: 'doctor' },
    time: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z$', description: 'RFC 3339, UTC, milliseconds' },
    netns: { type: ['string', 'null'] },
    status: { enum: ['ok', 'warn', 'fail'] },
    checks: {
      type: 'array', minItems: 1,
      items: {
        type: 'object', required: ['check', 'status', 'finding'],
        properties: {
          check: { type: 'string' },
          status: { enum: ['ok', 'warn', 'fail'] },
          finding: { type: 'string' },
          fix: { type: 'string' },
          data: { type: 'object', additionalProperties: { type: ['number', 'string', 'null'] } },
        },
      },
    },
  },
}, 'ctwatch doctor --json: one object; exit status 0 ok, 1 warn, 2 fail');

const nullableNumber = { type: ['number', 'null'] };
const fleetKey = {
  type: 'object', required: ['key', 'newPerS', 'live', 'hosts'],
  properties: {
    key: { type: 'string' }, newPerS: { type: 'number', minimum: 0 }, live: count,
    hosts: { type: 'array', items: { type: 'object', required: ['host', 'newPerS'], properties: { host: { type: 'string' }, newPerS: { type: 'number', minimum: 0 } } } },
  },
};
const fleet = file('fleet', 'ctwatch v1 `fleet --json` view (one line per refresh)', {
  type: 'object',
  required: ['v', 'event', 'time', 'hosts', 'destinations', 'processes', 'alerts', 'messages'],
  properties: {
    ...head('fleet'),
    hosts: {
      type: 'array',
      items: {
        type: 'object',
        required: ['host', 'fill', 'entries', 'max', 'timeToFull', 'newPerS', 'live', 'topDestination', 'topProcess', 'flows', 'alerts', 'silentFor', 'silent', 'time'],
        properties: {
          host: { type: 'string' }, fill: nullableNumber, entries: nullableCount, max: nullableCount, timeToFull: nullableNumber,
          newPerS: { type: 'number', minimum: 0 }, live: count, topDestination: { type: ['string', 'null'] }, topProcess: { type: ['string', 'null'] },
          flows: count, alerts: count, silentFor: { type: 'number', minimum: 0 }, silent: { type: 'boolean' }, time: { type: ['string', 'null'], description: "the host's time of its last snapshot" },
        },
      },
    },
    destinations: { type: 'array', items: fleetKey },
    processes: { type: 'array', items: fleetKey },
    alerts: {
      type: 'array',
      items: {
        type: 'object', required: ['rule', 'severity', 'subject', 'message', 'hosts'],
        properties: { rule: { type: 'string' }, severity: { type: 'string' }, subject: { type: 'string' }, message: { type: 'string' }, hosts: { type: 'array', items: { type: 'string' } } },
      },
    },
    messages: count,
  },
}, 'docs/fleet.md');

export const SCHEMAS = {
  new: conntrack('new'), update: conntrack('update'), destroy: conntrack('destroy'), snapshot: conntrack('snapshot'),
  snapshot_done: snapshotDone, overflow, resync, flow, churn, alert: alertFile('alert'), resolved: alertFile('resolved'), doctor, fleet,
};

export function render(schema) {
  return `${JSON.stringify(schema, null, 2)}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  mkdirSync(OUT, { recursive: true });
  for (const [name, schema] of Object.entries(SCHEMAS)) writeFileSync(join(OUT, `${name}.json`), render(schema));
  process.stdout.write(`${Object.keys(SCHEMAS).length} schemas in ${OUT}\n`);
}
