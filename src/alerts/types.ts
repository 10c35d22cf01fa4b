/** The alert record is defined with the other record shapes (src/recording/alert.ts): outputs below alerts/ use it too. */
export type { Alert } from '../recording/alert.js';
