/**
 * Empty arrays that already have the kind of element they will hold (V8's "elements kind").
 *
 * A `[]` starts out as an array of small integers. The first string, object or fraction
 * pushed into it changes its kind. V8 compiles the per-event code for the arrays it has seen,
 * so a fresh instance's `[]` is one it has not seen. When the warm-up's throwaway instances had
 * made the code hot, the live pipeline's first batch met new arrays, and the first push or store
 * threw the compiled code away. The live tracker, heavy hitters and interned keys then stayed
 * interpreted until the load came (bench/README.md, "Fresh instances and the compiled per-event
 * path"). An array made with one element of its final kind and emptied keeps that kind.
 */

/** An empty array for strings or objects (`undefined` too). */
export function objectArray<T>(): T[] {
  const a: unknown[] = [undefined];
  a.pop();
  return a as T[];
}

/** An empty array for numbers that are not all small integers (times, fractions). */
export function numberArray(): number[] {
  const a = [0.5];
  a.pop();
  return a;
}
