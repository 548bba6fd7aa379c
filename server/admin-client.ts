/**
 * How admin commands reach the console API: on the server machine the
 * data directory's cli.json names the address, the CA file and a token;
 * elsewhere `--server https://host:8443` with ROLLCALL_API_TOKEN and the CA
 * pin (`--ca-pin` / ROLLCALL_CA_PIN) or a CA file (`--ca-file`).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { ErrorBody } from '../common/enroll-api.js';
import { RollcallError } from '../common/errors.js';
import { requestJson } from '../common/https-json.js';
import { fetchPinnedCa } from '../common/pinned-tls.js';
import { LOCAL_CLI_FILE } from './server.js';

/** A connected admin API client. */
export interface AdminClient {
  /** Calls the API; throws RollcallError with the server's error code on a non-2xx answer. */
  call<T>(method: 'GET' | 'POST' | 'DELETE', apiPath: string, body?: unknown): Promise<T>;
}

/** Where to find the API. */
export interface AdminTarget {
  readonly dataDir?: string;
  readonly server?: string;
  readonly caPin?: string;
  readonly caFile?: string;
  readonly token?: string;
}

async function readJsonFile(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new RollcallError('NO_SERVER', `cannot read ${file}: is the server running with this --data-dir? (or use --server)`, { cause: err });
  }
  return JSON.parse(text) as Record<string, unknown>;
}

/** Resolves the target into a client. */
export async function connectAdmin(target: AdminTarget): Promise<AdminClient> {
  let url: URL;
  let token: string | undefined;
  let ca: string;
  if (target.server) {
    url = new URL(target.server.includes('://') ? target.server : `https://${target.server}`);
    token = target.token;
    if (!token) throw new RollcallError('USAGE', 'set ROLLCALL_API_TOKEN to an API token when using --server');
    if (target.caFile) ca = await fs.readFile(target.caFile, 'utf8');
    else if (target.caPin) ca = await fetchPinnedCa(url.hostname.replace(/^\[|\]$/g, ''), Number(url.port || 8443), target.caPin);
    else throw new RollcallError('USAGE', 'with --server, give --ca-pin (or ROLLCALL_CA_PIN) or --ca-file so the server can be verified');
  } else {
    const dataDir = path.resolve(target.dataDir ?? './data');
    const local = await readJsonFile(path.join(dataDir, LOCAL_CLI_FILE));
    url = new URL(String(local.server));
    token = target.token ?? String(local.token);
    ca = await fs.readFile(String(local.caFile), 'utf8');
  }
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port || 8443);
  return {
    async call<T>(method: 'GET' | 'POST' | 'DELETE', apiPath: string, body?: unknown): Promise<T> {
      let res;
      try {
        res = await requestJson({ host, port, path: apiPath, method, body, ca, headers: { authorization: `Bearer ${token}` } });
      } catch (err) {
        if (err instanceof RollcallError) throw err;
        throw new RollcallError('NO_SERVER', `cannot reach the server at ${url.origin}: ${(err as Error).message}`, { cause: err });
      }
      if (res.status >= 200 && res.status < 300) return res.body as T;
      const e = (res.body as ErrorBody | undefined)?.error;
      throw new RollcallError(e?.code ?? `HTTP_${res.status}`, e?.message ?? `the server answered HTTP ${res.status}`, { retryable: res.status >= 500 });
    },
  };
}
