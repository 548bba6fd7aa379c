/**
 * Pieces every admin command shares: the flags that say how to reach the
 * console API, and time formatting.
 */

/** Flags of every admin command. */
export const ADMIN_FLAGS = {
  'data-dir': { type: 'string' },
  server: { type: 'string' },
  'ca-pin': { type: 'string' },
  'ca-file': { type: 'string' },
  json: { type: 'boolean' },
  debug: { type: 'boolean' },
} as const;

/** Where the API is, from flags and the environment. */
export function adminTarget(values: { 'data-dir'?: string; server?: string; 'ca-pin'?: string; 'ca-file'?: string }, env: NodeJS.ProcessEnv) {
  return {
    dataDir: values['data-dir'] ?? env.ROLLCALL_DATA_DIR,
    server: values.server ?? env.ROLLCALL_SERVER,
    caPin: values['ca-pin'] ?? env.ROLLCALL_CA_PIN,
    caFile: values['ca-file'],
    token: env.ROLLCALL_API_TOKEN,
  };
}

/** An ISO time for tables: `2026-11-21 01:35:58Z`, or `-`. */
export const when = (iso: string | number | null | undefined): string =>
  iso === null || iso === undefined ? '-' : new Date(iso).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
