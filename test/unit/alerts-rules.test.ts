import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  compileFilter,
  defaultConfig,
  loadAlertConfig,
  parseAlertConfig,
  type Rule,
  type RuleKind,
} from '../../src/alerts/rules.js';

const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/alerts/${name}`, import.meta.url));
const example = fileURLToPath(new URL('../../examples/rules.yaml', import.meta.url));

function rule<K extends RuleKind>(rules: Rule[], name: string, kind: K): Extract<Rule, { kind: K }> {
  const r = rules.find((x) => x.name === name);
  expect(r?.kind).toBe(kind);
  return r as Extract<Rule, { kind: K }>;
}

/** Parses `text` expecting rejection; returns the error for further checks. */
function rejects(text: string): ConfigError {
  try {
    parseAlertConfig(text, 'rules.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const e = err as ConfigError;
    expect(e.code).toBe('ERR_RULES');
    expect(e.file).toBe('rules.yaml');
    return e;
  }
  throw new Error('expected the file to be rejected');
}

describe('defaults', () => {
  it('has the nine built-in rules, all enabled (leak_fill too, since its burst bound), with their thresholds', () => {
    const c = defaultConfig();
    expect(c.rules.map((r) => r.name)).toEqual([
      'churn_per_destination',
      'table_fill',
      'time_to_full',
      'kernel_drops',
      'time_wait_pileup',
      'churn_baseline',
      'unreplied_pileup',
      'snat_port_exhaustion',
      'leak_fill',
    ]);
    expect(rule(defaultConfig().rules, 'snat_port_exhaustion', 'snat_port_exhaustion')).toMatchObject({ threshold: 80, resolve: 70, for: 10 });
    expect(c.rules.every((r) => r.enabled && r.name === r.kind)).toBe(true);
    expect(rule(c.rules, 'leak_fill', 'leak_fill')).toMatchObject({ minRate: 500, burst: 1500, threshold: 900, resolve: 1800, for: 0, severity: 'critical' });
    expect(rule(c.rules, 'churn_per_destination', 'churn_per_destination')).toMatchObject({ threshold: 500, resolve: 400, rate: 'new10' });
    expect(rule(c.rules, 'table_fill', 'table_fill')).toMatchObject({ threshold: 80, resolve: 70 });
    expect(rule(c.rules, 'time_to_full', 'time_to_full')).toMatchObject({ threshold: 300, resolve: 600 });
    expect(rule(c.rules, 'kernel_drops', 'kernel_drops')).toMatchObject({ counters: ['drop', 'early_drop', 'insert_failed'], threshold: 0 });
    expect(rule(c.rules, 'time_wait_pileup', 'time_wait_pileup')).toMatchObject({ state: 'TIME_WAIT', threshold: 2000, resolve: 1500 });
    expect(rule(c.rules, 'churn_baseline', 'churn_baseline')).toMatchObject({ factor: 5, minRate: 100 });
    expect(rule(c.rules, 'unreplied_pileup', 'unreplied_pileup')).toMatchObject({ threshold: 100, resolve: 50, for: 30 });
    expect(c.deliver).toEqual([]);
  });

  it('an empty file or a comment-only file means the defaults', () => {
    expect(parseAlertConfig('', 'x')).toEqual(defaultConfig());
    expect(parseAlertConfig('# nothing yet\n', 'x')).toEqual(defaultConfig());
  });
});

describe('good files', () => {
  it('loads a file from disk, merging it over the built-ins', async () => {
    const c = await loadAlertConfig(fixture('good.yaml'));
    const churn = rule(c.rules, 'churn_per_destination', 'churn_per_destination');
    expect(churn.threshold).toBe(1000);
    // resolve follows the new threshold in the built-in's proportion
    expect(churn.resolve).toBe(800);
    expect(churn.for).toBe(5);
    expect(rule(c.rules, 'kernel_drops', 'kernel_drops').enabled).toBe(false);
    const redis = rule(c.rules, 'redis', 'time_wait_pileup');
    expect(redis).toMatchObject({ match: ['*:6379/tcp'], threshold: 500, resolve: 375, state: 'TIME_WAIT', severity: 'warning' });
    expect(c.rules).toHaveLength(10);
  });

  it('parses the documented example in full', () => {
    const c = parseAlertConfig(readFileSync(example, 'utf8'), example);
    expect(c.baseline).toEqual({ rate: 'new10', window: 1800, bucket: 60, minSamples: 10, maxKeys: 1000 });
    expect(rule(c.rules, 'churn_per_destination', 'churn_per_destination').ignore).toEqual(['*:53/udp']);
    expect(rule(c.rules, 'kernel_drops', 'kernel_drops').resolveFor).toBe(60);
    expect(rule(c.rules, 'time_wait_pileup', 'time_wait_pileup').resolvedMessage).toBe('{subject}: TIME_WAIT back to {value} after {duration}');
    expect(rule(c.rules, 'redis_churn_critical', 'churn_per_destination')).toMatchObject({
      threshold: 2000,
      resolve: 1600,
      severity: 'critical',
      for: 10,
      match: ['*:6379/tcp'],
    });
    expect(rule(c.rules, 'table_nearly_full', 'table_fill')).toMatchObject({ threshold: 95, resolve: 85 });
    expect(rule(c.rules, 'leak_fill', 'leak_fill')).toMatchObject({ minRate: 500, burst: 1500, threshold: 900, resolve: 1800 });
    expect(rule(parseAlertConfig('rules:\n  leak_fill:\n    burst: 5000\n').rules, 'leak_fill', 'leak_fill').burst).toBe(5000);
    expect(() => parseAlertConfig('rules:\n  leak_fill:\n    burst: 0\n')).toThrow(/rules\.leak_fill\.burst/);
    expect(c.deliver).toEqual([
      {
        type: 'webhook',
        minSeverity: 'warning',
        sendResolved: true,
        // a webhook is an HTTP sink for alert records, with the webhook policy
        sink: {
          type: 'webhook',
          name: 'webhook http://127.0.0.1:9093',
          at: 'deliver[0]',
          url: 'http://127.0.0.1:9093/ctwatch',
          format: 'jsonl',
          events: ['alert', 'resolved'],
          batch: { maxRecords: 1, maxWaitMs: 0 },
          // retries: 5 is six attempts
          retry: { initialMs: 500, maxMs: 30_000, maxAttempts: 6, maxRetryAfterMs: 120_000, longRetryAfter: 'give-up' },
          memory: { maxRecords: 1000 },
          overflow: 'drop-oldest',
          // secrets are never inline: the token is read from its file when the file is loaded
          token: { file: '/etc/ctwatch/webhook.token' },
          headers: { 'X-Team': 'infra' },
          gzip: false,
          timeoutMs: 5000,
        },
      },
      {
        type: 'exec',
        argv: ['/usr/local/bin/page-oncall', '--team', 'infra'],
        timeout: 10,
        concurrency: 2,
        queue: 100,
        minSeverity: 'critical',
        sendResolved: false,
        env: [],
      },
    ]);
  });

  it('accepts percentages with a sign, durations in several units and an empty built-in entry', () => {
    const c = parseAlertConfig(
      ['rules:', '  table_fill:', '    threshold: "90%"', '  time_to_full:', '    threshold: 1m30s', '  churn_baseline:', ''].join('\n'),
    );
    expect(rule(c.rules, 'table_fill', 'table_fill')).toMatchObject({ threshold: 90, resolve: 80 });
    expect(rule(c.rules, 'time_to_full', 'time_to_full')).toMatchObject({ threshold: 90, resolve: 180 });
    expect(rule(c.rules, 'churn_baseline', 'churn_baseline').factor).toBe(5);
  });
});

describe('bad files: every problem has file:line: field: reason', () => {
  it('YAML syntax errors', () => {
    const e = rejects('rules:\n  table_fill:\n    threshold: [80\n');
    expect(e.field).toBe('yaml');
    expect(e.line).toBeGreaterThanOrEqual(3);
    expect(e.message).toMatch(/^rules\.yaml:\d+: yaml: [^\n]*[^:]$/);
  });

  it('duplicate keys', () => {
    const e = rejects('rules:\n  table_fill:\n    threshold: 80\n    threshold: 90\n');
    expect(e.line).toBe(4);
    expect(e.message).toMatch(/unique/i);
  });

  it('an unknown top-level section, with a suggestion', () => {
    const e = rejects('rulez:\n  table_fill: false\n');
    expect(e.message).toBe('rules.yaml:1: rulez: unknown field (did you mean rules?)');
  });

  it('a misspelt rule field, from a file on disk', async () => {
    const path = fixture('bad-typo.yaml');
    const e = await loadAlertConfig(path).then(
      () => undefined,
      (err: unknown) => err as ConfigError,
    );
    expect(e).toBeInstanceOf(ConfigError);
    expect(e!.message).toBe(`${path}:4: rules.table_fill.thresold: unknown field for table_fill (did you mean threshold?)`);
    expect(e!.line).toBe(4);
    expect(e!.field).toBe('rules.table_fill.thresold');
  });

  it('a field another kind has', () => {
    const e = rejects('rules:\n  table_fill:\n    factor: 3\n');
    expect(e.message).toBe('rules.yaml:3: rules.table_fill.factor: unknown field for table_fill');
  });

  it('a duration without a unit, and one that is not a duration', () => {
    expect(rejects('rules:\n  table_fill:\n    for: 10\n').message).toBe(
      'rules.yaml:3: rules.table_fill.for: 10 needs a unit: write 10s, 10m or 10h',
    );
    expect(rejects('rules:\n  table_fill:\n    cooldown: soon\n').message).toBe(
      'rules.yaml:3: rules.table_fill.cooldown: "soon" is not a duration: write e.g. 500ms, 10s, 5m, 1h30m',
    );
  });

  it('a severity that does not exist', () => {
    const e = rejects('rules:\n  kernel_drops:\n    severity: page\n');
    expect(e.message).toBe('rules.yaml:3: rules.kernel_drops.severity: expected one of info, warning, critical');
  });

  it('a resolve threshold on the wrong side (would flap)', () => {
    const e = rejects('rules:\n  table_fill:\n    threshold: 80\n    resolve: 85\n');
    expect(e.line).toBe(4);
    expect(e.field).toBe('rules.table_fill.resolve');
    expect(e.message).toMatch(/must not be above threshold/);
    const e2 = rejects('rules:\n  time_to_full:\n    threshold: 10m\n    resolve: 5m\n');
    expect(e2.message).toMatch(/^rules\.yaml:4: rules\.time_to_full\.resolve: .*must not be below threshold/);
  });

  it('a percentage out of range', () => {
    const e = rejects('rules:\n  table_fill:\n    threshold: 150\n');
    expect(e.message).toMatch(/^rules\.yaml:3: rules\.table_fill\.threshold: expected a percentage/);
  });

  it('a new rule without a kind, or with a kind that does not exist', () => {
    expect(rejects('rules:\n  mine:\n    threshold: 3\n').message).toMatch(/^rules\.yaml:2: rules\.mine\.kind: required/);
    expect(rejects('rules:\n  mine:\n    kind: churn\n').message).toMatch(/^rules\.yaml:3: rules\.mine\.kind: expected one of churn_per_destination, /);
  });

  it('a built-in given another kind', () => {
    const e = rejects('rules:\n  table_fill:\n    kind: kernel_drops\n');
    expect(e.message).toBe('rules.yaml:3: rules.table_fill.kind: table_fill is the built-in table_fill rule; pick another name');
  });

  it('an unknown placeholder in a resolved message', () => {
    const e = rejects('rules:\n  table_fill:\n    resolved_message: "ok after {elapsed}"\n');
    expect(e.message).toMatch(/^rules\.yaml:3: rules\.table_fill\.resolved_message: unknown placeholder \{elapsed\}/);
  });

  it('a baseline needing more samples than its window holds', () => {
    const e = rejects('baseline:\n  window: 5m\n  bucket: 1m\n');
    expect(e.message).toBe('rules.yaml:2: baseline.min_samples: needs 10 slots but window / bucket holds 5');
  });

  it('an exec hook given as a shell string', () => {
    const e = rejects('deliver:\n  - exec: /bin/page --now\n');
    expect(e.message).toMatch(/^rules\.yaml:2: deliver\[0\]\.exec: give the command as a list/);
  });

  it('a webhook that is not http(s), and a delivery that is neither kind', () => {
    expect(rejects('deliver:\n  - webhook: ftp://example.com/x\n').message).toBe(
      'rules.yaml:2: deliver[0].webhook: expected an http:// or https:// URL',
    );
    expect(rejects('deliver:\n  - url: http://x\n').message).toMatch(/^rules\.yaml:2: deliver\[0\]: each delivery needs exactly one/);
  });

  it('reports every problem, not only the first', () => {
    const e = rejects('rules:\n  table_fill:\n    threshold: lots\n  kernel_drops:\n    severity: loud\n');
    expect(e.issues.map((i) => `${i.line} ${i.field}`)).toEqual(['3 rules.table_fill.threshold', '5 rules.kernel_drops.severity']);
    expect(e.message.split('\n')).toHaveLength(2);
    expect(e.line).toBe(3);
  });

  it('a file that cannot be read', async () => {
    await expect(loadAlertConfig(fixture('missing.yaml'))).rejects.toMatchObject({ code: 'ERR_RULES', message: /cannot read: ENOENT/ });
  });
});

describe('compileFilter', () => {
  it('matches globs and honours ignore', () => {
    const f = compileFilter({ match: ['*:6379/tcp', '10.0.0.?:*'], ignore: ['10.0.0.9:*'] });
    expect(f('127.0.0.5:6379/tcp')).toBe(true);
    expect(f('10.0.0.1:443/tcp')).toBe(true);
    expect(f('10.0.0.9:443/tcp')).toBe(false);
    expect(f('10.0.0.10:443/tcp')).toBe(false);
    expect(f('127.0.0.5:63790/tcp')).toBe(false);
    expect(compileFilter({ match: [], ignore: [] })('anything')).toBe(true);
  });
});
