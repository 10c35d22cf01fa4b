/**
 * Text that other people choose (process names, systemd unit names, anything read from a peer)
 * shown on an operator's terminal or in a text log: control characters would move the cursor,
 * clear the screen, retitle the terminal or forge log lines, and bidirectional overrides would
 * make a name read as another. Each becomes a visible escape instead (`\x1b`, `\u202e`).
 */

// C0 controls and DEL, C1 controls (0x9b is a one-byte CSI on some terminals), the bidi controls
// (embeddings, overrides, isolates, marks) and the line/paragraph separators.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const escape = (c: string): string => {
  const code = c.charCodeAt(0);
  return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
};

/** `text` with every control or bidi character written as an escape; unchanged when it has none. */
export function printable(text: string): string {
  UNSAFE.lastIndex = 0;
  return UNSAFE.test(text) ? text.replace(UNSAFE, escape) : text;
}
