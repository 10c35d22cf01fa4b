/** cgroup path -> systemd unit / container id, passwd parsing, local-address prefixes. */
import { describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cgroupFacts, cgroupPath, parsePasswd, podOf, Users } from '../../src/process/enrich.js';
import { groupKey } from '../../src/flow/keys.js';

const fixture = (name: string) => readFileSync(join(__dirname, '..', 'fixtures', 'process', name), 'utf8');
const facts = (name: string) => cgroupFacts(cgroupPath(fixture(name)));

describe('cgroup facts', () => {
  it('a systemd service', () => {
    expect(facts('cgroup-v2-service.txt')).toEqual({ cgroup: '/system.slice/nginx.service', unit: 'nginx.service' });
  });
  it('a docker container (systemd driver): the id, not the docker-<id>.scope as a unit', () => {
    expect(facts('cgroup-v2-docker.txt')).toEqual({
      cgroup: '/system.slice/docker-3f4e5d6c7b8a99aabbccddeeff00112233445566778899aabbccddeeff001122.scope',
      container: '3f4e5d6c7b8a99aabbccddeeff00112233445566778899aabbccddeeff001122',
    });
  });
  it('a kubernetes pod container (containerd)', () => {
    const f = facts('cgroup-v2-k8s.txt');
    expect(f.container).toBe('aa11bb22cc33dd44ee55ff6677889900aa11bb22cc33dd44ee55ff6677889900');
    expect(f.unit).toBeUndefined();
  });
  it('a pod: UID and QoS class from the kubepods path, systemd driver (underscores) and cgroupfs', () => {
    expect(facts('cgroup-v2-k8s.txt')).toMatchObject({ pod: '1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d', qos: 'burstable' });
    expect(facts('cgroup-v2-k8s-systemd-guaranteed.txt')).toMatchObject({ pod: '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0', qos: 'guaranteed', container: 'bb11bb22cc33dd44ee55ff6677889900aa11bb22cc33dd44ee55ff6677889900' });
    expect(facts('cgroup-v2-k8s-systemd-besteffort.txt')).toMatchObject({ pod: '11111111-2222-3333-4444-555555555555', qos: 'besteffort' });
    expect(facts('cgroup-v2-k8s-cgroupfs-burstable.txt')).toMatchObject({ pod: '9a8b7c6d-5e4f-3a2b-1c0d-9e8f7a6b5c4d', qos: 'burstable', container: 'dd11bb22cc33dd44ee55ff6677889900aa11bb22cc33dd44ee55ff6677889900' });
    expect(facts('cgroup-v1-k8s-cgroupfs-guaranteed.txt')).toMatchObject({ pod: '01234567-89ab-cdef-0123-456789abcdef', qos: 'guaranteed' });
    // not a pod: docker, a service, a pod-like name outside kubepods, a malformed UID
    for (const f of ['cgroup-v2-docker.txt', 'cgroup-v2-service.txt', 'cgroup-v2-podman.txt']) expect(facts(f).pod).toBeUndefined();
    expect(podOf('/system.slice/pod1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d')).toBeUndefined();
    expect(podOf('/kubepods/burstable/podnot-a-uid')).toBeUndefined();
  });
  it('a pod\'s containers count together under the pod, with its QoS class', () => {
    expect(groupKey({ pid: 1, comm: 'x', container: 'aa'.repeat(32), pod: '1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d', qos: 'burstable' })).toBe('pod:1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d burstable');
    expect(groupKey({ pid: 1, comm: 'x', container: 'aa'.repeat(32) })).toBe('container:aaaaaaaaaaaa');
  });
  it('podman: the id from libpod-<id>.scope with a sub-cgroup below it', () => {
    expect(facts('cgroup-v2-podman.txt').container).toBe('feedfacecafebeef00112233445566778899aabbccddeeff0011223344556677');
  });
  it('a desktop session: the innermost unit, named with the user manager it is under', () => {
    // (was `vte-spawn-1234.scope` alone: a user could then pass as any system unit, below)
    expect(facts('cgroup-v2-user.txt')).toMatchObject({ unit: 'user@1000.service/vte-spawn-1234.scope' });
  });
  it("below a user's manager, names are the user's: no system unit, container or pod taken from them", () => {
    const base = '/user.slice/user-1000.slice/user@1000.service';
    expect(cgroupFacts(`${base}/app.slice/sshd.service`)).toEqual({ cgroup: `${base}/app.slice/sshd.service`, unit: 'user@1000.service/sshd.service' });
    const fake = `${base}/user.slice/docker-${'ab'.repeat(32)}.scope`;
    expect(cgroupFacts(fake)).toEqual({ cgroup: fake, unit: `user@1000.service/docker-${'ab'.repeat(32)}.scope` });
    const pod = `${base}/kubepods.slice/kubepods-pod1a2b3c4d_5e6f_7a8b_9c0d_1e2f3a4b5c6d.slice/x.scope`;
    expect(cgroupFacts(pod)).toEqual({ cgroup: pod, unit: 'user@1000.service/x.scope' });
    expect(groupKey({ pid: 1, comm: 'x', ...cgroupFacts(fake) })).toBe(`unit:user@1000.service/docker-${'ab'.repeat(32)}.scope`);
  });
  it('cgroup v1 (cgroupfs driver): name=systemd first, bare 64-hex id', () => {
    expect(facts('cgroup-v1-docker.txt')).toEqual({
      cgroup: '/docker/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
      container: '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
    });
  });
  it('hybrid with only one controller placed: that path, no unit, no container (32 hex is not an id)', () => {
    expect(facts('cgroup-hybrid-sandbox.txt')).toEqual({ cgroup: '/process_api/17291273783d97a490e60ac9f8a4e0ea' });
  });
  it('the root cgroup', () => {
    expect(facts('cgroup-v2-root.txt')).toEqual({ cgroup: '/' });
    expect(cgroupFacts(cgroupPath(''))).toEqual({});
  });
  it('a unit outside the container is not the container\'s', () => {
    expect(cgroupFacts('/system.slice/containerd.service/kubepods-besteffort-pod1.slice:cri-containerd:' + 'ab'.repeat(32))).toMatchObject({ unit: 'containerd.service' });
    expect(cgroupFacts('/system.slice/containerd.service/' + 'ab'.repeat(32))).toEqual({ cgroup: '/system.slice/containerd.service/' + 'ab'.repeat(32), container: 'ab'.repeat(32) });
  });
});

describe('passwd', () => {
  it('uid -> first name, skipping comments and broken lines', () => {
    const users = parsePasswd(fixture('passwd'));
    expect(users.get(0)).toBe('root');
    expect(users.get(33)).toBe('www-data');
    expect(users.get(65534)).toBe('nobody');
    expect(users.size).toBe(4);
  });
  it('reloads on an unknown uid, at most every minReloadMs, only when the file changed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ctwatch-passwd-'));
    const path = join(dir, 'passwd');
    writeFileSync(path, 'root:x:0:0::/:/bin/sh\n');
    let now = 0;
    const users = new Users(path, 1000, () => now);
    expect(await users.name(0)).toBe('root');
    writeFileSync(path, 'root:x:0:0::/:/bin/sh\napp:x:1001:1001::/:/bin/sh\n', { flag: 'w' });
    // Too soon: not reread.
    expect(await users.name(1001)).toBeUndefined();
    now = 2000;
    expect(await users.name(1001)).toBe('app');
    expect(users.cached(1001)).toBe('app');
    // Missing file: names stay unknown, nothing throws.
    const gone = new Users(join(dir, 'nope'), 0, () => now);
    expect(await gone.name(0)).toBeUndefined();
  });
  it('callers that arrive while the file is being read wait for that read', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ctwatch-passwd-'));
    const path = join(dir, 'passwd');
    writeFileSync(path, 'root:x:0:0::/:/bin/sh\n');
    const users = new Users(path, 10_000, () => 0);
    // The first lookups of a burst of flows all start before the first read has finished.
    expect(await Promise.all([users.name(0), users.name(0), users.name(0)])).toEqual(['root', 'root', 'root']);
  });
});
