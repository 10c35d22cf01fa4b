/**
 * Secret and TLS files a sinks file names are read as root (SECURITY.md T2): a FIFO must not hang
 * start-up, a device must not fill memory, a symlink planted in another account's directory must
 * not make root send /etc/shadow as a token; a symlink root put in its own directory still works.
 * And a directory whose group bits allow writing is not trusted even when its group is root (with
 * an ACL those bits are the mask of a named account's entry).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ConfigIssue } from '../../src/config/reader.js';
import { prepareSink } from '../../src/sinks/build.js';
import { parseSinkConfigs } from '../../src/sinks/index.js';
import { privateDirectory } from '../../src/util/safe-file.js';

const NOBODY = Number(execFileSync('id', ['-u', 'nobody']).toString().trim());
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ctwatch-secrets-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function tokenProblems(tokenFile: string): string[] {
  const [spec] = parseSinkConfigs([{ type: 'http', name: 'siem', url: 'http://127.0.0.1:9/x', token_file: tokenFile }]);
  const issues: ConfigIssue[] = [];
  prepareSink(spec, issues, { env: {} });
  return issues.map((i) => `${i.field}: ${i.reason}`);
}

describe('secret files read as root', () => {
  it('a FIFO is refused at once (it hung start-up), a device is refused (it filled memory)', () => {
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    expect(tokenProblems(join(dir, 'fifo'))).toEqual([`sinks[0].token_file: cannot read ${join(dir, 'fifo')}: ${join(dir, 'fifo')} is a FIFO, not a regular file`]);
    expect(tokenProblems('/dev/zero')[0]).toContain('/dev/zero is a character device, not a regular file');
  });

  it("a symlink in nobody's directory is not followed; one in root's own directory is", () => {
    const theirs = join(dir, 'theirs');
    mkdirSync(theirs);
    chownSync(theirs, NOBODY, NOBODY);
    symlinkSync('/etc/shadow', join(theirs, 'token'));
    const [problem] = tokenProblems(join(theirs, 'token'));
    expect(problem).toContain(`${theirs} belongs to nobody`);

    writeFileSync(join(dir, 'real-token'), 'tok-abcdef\n', { mode: 0o600 });
    symlinkSync(join(dir, 'real-token'), join(dir, 'token'));
    expect(tokenProblems(join(dir, 'token'))).toEqual([]);
  });

  it('a file over 1 MiB is refused with its size', () => {
    writeFileSync(join(dir, 'big'), Buffer.alloc((1 << 20) + 1, 0x41));
    expect(tokenProblems(join(dir, 'big'))[0]).toContain('more than the 1048576 it can be');
  });
});

describe('directories writable by group root', () => {
  it('are not trusted for a spool (with an ACL the group bits are a named account\'s mask)', () => {
    const shared = join(dir, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o775); // root:root, group-writable: what setfacl -m u:alice:rwx shows
    expect(() => privateDirectory(join(shared, 'spool'))).toThrow(/writable by group root/);
  });
});
