/**
 * The delivery loop's one wait: it ends when work arrives (wake), or at a deadline on the
 * monotonic clock (a partial batch's first record has waited long enough), whichever comes first.
 */
import { monoMs } from '../util/clock.js';

export class Wakeup {
  private waiter: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;

  /** Ends the wait at monotonic time `at`: only while someone waits, and one deadline at a time. */
  arm(at: number): void {
    if (this.timer || !this.waiter) return;
    const wait = Math.max(0, at - monoMs());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.wake();
    }, wait);
  }

  wake(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** Waits for wake(), or for `deadline` when one is given. */
  wait(deadline?: number): Promise<void> {
    return new Promise((resolve) => {
      this.waiter = resolve;
      if (deadline !== undefined) this.arm(deadline);
    });
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }
}
