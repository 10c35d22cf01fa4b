/**
 * Strings shared by many live flows (a destination key, a source address) stored once and named
 * by a small integer, so a flow slot holds a Uint32 instead of a string pointer per field. Entries
 * are reference counted by the live flows that use them and freed at zero, their numbers reused:
 * the table never holds more than the peak number of distinct keys alive at once, however many
 * sources a scan walks through over time. A key's reference count is also its live-flow count.
 */
export class InternTable {
  private readonly ids = new Map<string, number>();
  private readonly keys: (string | undefined)[] = [];
  private refs = new Uint32Array(64);
  private readonly free: number[] = [];

  /** Distinct keys in use. */
  get size(): number {
    return this.ids.size;
  }

  /** Numbers ever handed out: the peak of `size`, which bounds memory. */
  get capacity(): number {
    return this.keys.length;
  }

  /** Takes a reference on key and returns its number. */
  acquire(key: string): number {
    let id = this.ids.get(key);
    if (id === undefined) {
      id = this.free.pop();
      if (id === undefined) {
        id = this.keys.length;
        this.keys.push(key);
        if (id >= this.refs.length) {
          const grown = new Uint32Array(this.refs.length * 2);
          grown.set(this.refs);
          this.refs = grown;
        }
      } else {
        this.keys[id] = key;
      }
      this.ids.set(key, id);
    }
    this.refs[id]++;
    return id;
  }

  /** Drops a reference; the key is forgotten when none is left. */
  release(id: number): void {
    if (--this.refs[id] === 0) {
      this.ids.delete(this.keys[id] as string);
      this.keys[id] = undefined;
      this.free.push(id);
    }
  }

  key(id: number): string {
    return this.keys[id] as string;
  }

  /** The key's number, or -1 when not in use. */
  find(key: string): number {
    return this.ids.get(key) ?? -1;
  }

  /** References held on a number (0 when free). */
  refsOf(id: number): number {
    return this.refs[id];
  }

  /** References held on a key: the number of live flows using it. */
  count(key: string): number {
    const id = this.ids.get(key);
    return id === undefined ? 0 : this.refs[id];
  }
}
