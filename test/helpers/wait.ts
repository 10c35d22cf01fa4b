/** Every wait in a test has a deadline: poll a condition, fail naming what did not happen. */

/** Polls `check` until it returns a truthy value or the deadline passes. `what` may be a function,
 * called at the deadline: what a child said by then (its stderr) belongs in the failure. */
export async function waitFor<T>(check: () => T | Promise<T>, what: string | (() => string), timeoutMs = 10_000, everyMs = 20): Promise<NonNullable<Awaited<T>>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<Awaited<T>>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
