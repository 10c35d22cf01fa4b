/** The one config reader: bounded file reads, file:line errors, did-you-mean, the secrets policy. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, readConfigFile } from '../../src/config/reader.js';
import { secretForms, basicForms, scrub } from '../../src/config/secrets.js';
import { loadAlertConfig, parseAlertConfig } from '../../src/alerts/rules.js';
import { parseSinkFile, SinkConfigError } from '../../src/sinks/config.js';

const dir = mkdtempSync(join(tmpdir(), 'ctwatch-reader-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function refused(p: Promise<unknown>): Promise<ConfigError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ConfigError);
  return e as ConfigError;
}

function sinkIssues(text: string): string[] {
  try {
    parseSinkFile(text, 'sinks.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(SinkConfigError);
    return (err as SinkConfigError).message.split('\n');
  }
  return [];
}

describe('readConfigFile', () => {
  it('reads a regular file', async () => {
    const p = join(dir, 'ok.yaml');
    writeFileSync(p, 'rules: {}\n');
    expect(await readConfigFile(p, 'rules file', 'ERR_RULES')).toBe('rules: {}\n');
  });

  it('refuses a FIFO at once instead of waiting for a writer', async () => {
    const p = join(dir, 'fifo');
    execFileSync('mkfifo', [p]);
    const e = await refused(readConfigFile(p, 'rules file', 'ERR_RULES'));
    expect(e.message).toBe(`rules file ${p} is a FIFO, not a regular file`);
    expect(e.exitCode).toBe(66);
  });

  it('refuses a device, a directory, a missing file', async () => {
    expect((await refused(readConfigFile('/dev/zero', 'sinks file', 'ERR_SINK_CONFIG'))).message).toBe('sinks file /dev/zero is a device, not a regular file');
    expect((await refused(readConfigFile(dir, 'sinks file', 'ERR_SINK_CONFIG'))).message).toMatch(/is a directory, not a regular file$/);
    const missing = await refused(readConfigFile(join(dir, 'nope'), 'rules file', 'ERR_RULES'));
    expect(missing.message).toMatch(/^rules file .*nope does not exist \(cannot read: ENOENT\)$/);
    expect([missing.exitCode, missing.code]).toEqual([66, 'ERR_RULES']);
  });

  it('refuses a file over the bound, reading no more than the bound', async () => {
    const p = join(dir, 'big.yaml');
    writeFileSync(p, `# ${'x'.repeat(2000)}\n`);
    const e = await refused(readConfigFile(p, 'rules file', 'ERR_RULES', 1024));
    expect(e.message).toBe(`rules file ${p} is larger than 1K: is it the right file?`);
    expect(e.exitCode).toBe(78);
  });
});

describe('one error model for both files', () => {
  it('sinks problems have file:line, in file order, with did-you-mean', () => {
    expect(
      sinkIssues(['sinks:', '  - type: http', '    url: ftp://x', '    formt: ecs', '  - type: syslog', '    host: h', '    port: 0'].join('\n')),
    ).toEqual([
      'sinks.yaml:3: sinks[0].url: expected an http:// or https:// URL',
      'sinks.yaml:4: sinks[0].formt: unknown field for type http (did you mean format?)',
      'sinks.yaml:7: sinks[1].port: 0 is out of range: use 1 to 65535',
    ]);
  });

  it('the sinks file needs its list, and says what it found instead', () => {
    expect(sinkIssues('sink:\n  - type: http\n')).toEqual(["sinks.yaml:1: sinks: expected a top-level 'sinks:' list, not 'sink:' (see docs/siem.md)"]);
    expect(sinkIssues('')).toEqual(["sinks.yaml: sinks: expected a top-level 'sinks:' list (see docs/siem.md)"]);
  });

  it('YAML aliases are refused in both files (they can expand without bound)', () => {
    expect(sinkIssues('a: &x {type: http}\nsinks: [*x]\n')).toEqual(['sinks.yaml:2: yaml: aliases (*x) are not supported: write the value out']);
    expect(() => parseAlertConfig('rules:\n  a: &r { kind: table_fill }\n  b: *r\n', 'rules.yaml')).toThrow('rules.yaml:3: yaml: aliases (*r) are not supported');
  });

  it('duplicate keys are refused at their line, found with one set per map (a 256 KiB file of one-line rules)', () => {
    expect(() => parseAlertConfig('rules:\n  a: {kind: table_fill}\n  a: {kind: table_fill}\n', 'rules.yaml')).toThrow('rules.yaml:3: yaml: Map keys must be unique');
    expect(sinkIssues('sinks:\n  - type: http\n    type: file\n')).toEqual(['sinks.yaml:3: yaml: Map keys must be unique']);
    let text = 'rules:\n';
    for (let i = 0; text.length < 250 * 1024; i++) text += `  r${i}: {kind: churn_per_destination, threshold: 10}\n`;
    // (1.5 s with the library's pairwise key check, 0.4 s with one set per map: a figure, not a test)
    expect(() => parseAlertConfig(text, 'rules.yaml')).toThrow(/rules\.yaml:2: rules: \d+ rules: at most 1000/);
  });

  it('a summary line says how many more problems there are', () => {
    try {
      parseAlertConfig('rules:\n  table_fill:\n    for: soon\n    cooldown: 5\n    severity: loud\n', 'rules.yaml');
      expect.unreachable();
    } catch (err) {
      expect((err as ConfigError).summary).toBe(
        'rules.yaml:3: rules.table_fill.for: "soon" is not a duration: write e.g. 500ms, 10s, 5m, 1h30m (and 2 more problems in this file)',
      );
    }
  });
});

describe('one secrets policy', () => {
  it('credential headers only from a file or the environment, in both files', () => {
    expect(sinkIssues('sinks:\n  - type: http\n    url: http://x\n    headers:\n      Authorization: Bearer abcdef\n      X-Team: infra\n')).toEqual([
      'sinks.yaml:5: sinks[0].headers.Authorization: secrets are not accepted inline: give it as { file: PATH } or { env: NAME }',
    ]);
    expect(() =>
      parseAlertConfig('deliver:\n  - webhook: http://x\n    headers:\n      X-Api-Key: abcdef\n', 'rules.yaml'),
    ).toThrow('rules.yaml:4: deliver[0].headers.X-Api-Key: secrets are not accepted inline: give it as { file: PATH } or { env: NAME }');
    const [s] = parseSinkFile('sinks:\n  - type: http\n    url: http://x\n    headers:\n      Authorization: { env: HOOK_AUTH }\n      X-Team: infra\n');
    expect((s as { headers: unknown }).headers).toEqual({ Authorization: { env: 'HOOK_AUTH' }, 'X-Team': 'infra' });
  });

  it('a webhook token is read when the rules file is loaded; a missing one refuses the file', async () => {
    const tok = join(dir, 'hook.token');
    writeFileSync(tok, 'tok-123456\n');
    const good = join(dir, 'hook.yaml');
    writeFileSync(good, `deliver:\n  - webhook: http://127.0.0.1:9/x\n    token_file: ${tok}\n    headers: { X-Key: { env: CTW_TEST_KEY } }\n`);
    const c = await loadAlertConfig(good, { CTW_TEST_KEY: 'key-abcdef' });
    expect(c.deliver[0]).toMatchObject({ type: 'webhook', sink: { token: { file: tok }, headers: { 'X-Key': { env: 'CTW_TEST_KEY' } } } });
    const e = await refused(loadAlertConfig(good, {}));
    expect(e.message).toBe(`${good}: deliver[0].headers.X-Key: environment variable CTW_TEST_KEY is not set`);
  });

  it('every form a credential takes is scrubbed, Basic included', () => {
    const basic = `Basic ${Buffer.from('svc:pa55-word').toString('base64')}`;
    expect(secretForms(basic)).toEqual(expect.arrayContaining([basic, Buffer.from('svc:pa55-word').toString('base64'), 'svc:pa55-word', 'pa55-word']));
    const text = `echo: authorization=${basic} user=svc:pa55-word`;
    const out = scrub(text, basicForms('svc', 'pa55-word'));
    expect(out).not.toMatch(/pa55|cGE1|c3ZjOnBh/);
    expect(scrub('key=abc', ['abc'])).toBe('key=abc'); // too short to scrub safely
  });
});
