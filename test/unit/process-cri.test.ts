/** The CRI pod-name client's pure parts: the flag, the reply's validation and bounds. */
import { describe, expect, it } from 'vitest';
import { parseCriSocket, podsOfReply } from '../../src/process/cri.js';

const UID = '7c1e2a90-3b4d-4e5f-8a6b-9c0d1e2f3a4b';

describe('--cri-socket', () => {
  it('auto (default), off, or an absolute path; anything else is one usage line', () => {
    expect(parseCriSocket(undefined)).toBeUndefined();
    expect(parseCriSocket('auto')).toBeUndefined();
    expect(parseCriSocket('off')).toBe('off');
    expect(parseCriSocket('/run/k3s/containerd/containerd.sock')).toBe('/run/k3s/containerd/containerd.sock');
    expect(() => parseCriSocket('containerd.sock')).toThrow(/absolute path .* or use auto or off/);
  });
});

describe('ListPodSandbox replies', () => {
  it('keeps pods with a UID, a DNS name and namespace; counts and skips the rest', () => {
    const { pods, invalid } = podsOfReply({
      items: [
        { id: 'x', metadata: { name: 'cart-7d9f', uid: UID, namespace: 'shop' } },
        { id: 'y', metadata: { name: 'evil\x1b[2J', uid: '11111111-2222-3333-4444-555555555555', namespace: 'shop' } },
        { id: 'z', metadata: { name: 'a', uid: 'not-a-uid', namespace: 'shop' } },
        { id: 'w' },
      ],
    }, 10);
    expect([...pods]).toEqual([[UID, { name: 'cart-7d9f', namespace: 'shop' }]]);
    expect(invalid).toBe(3);
  });

  it('holds at most `max` pods, and a reply without items is invalid', () => {
    const items = Array.from({ length: 5 }, (_, i) => ({ metadata: { name: `p${i}`, namespace: 'n', uid: `0000000${i}-0000-0000-0000-000000000000` } }));
    expect(podsOfReply({ items }, 3).pods.size).toBe(3);
    expect(podsOfReply(null, 3)).toEqual({ pods: new Map(), invalid: 1 });
  });
});
