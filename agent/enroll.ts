/**
 * Enrollment on the endpoint: make a key pair here (the private key never
 * leaves this computer), fetch the CA by its pin, send a CSR with the
 * enrollment token, check what comes back, and store it.
 *
 * Several servers (a public name and a LAN address, say) are tried in
 * order: one that cannot be reached, does not show the pinned CA, is busy
 * (429) or fails (5xx) hands over to the next; a server that answers the
 * enrollment with a refusal (a bad or used-up token: 4xx) ends it there,
 * because the token is the same everywhere.
 */
import crypto from 'node:crypto';
import os from 'node:os';
import { checkEnrollResponse, ENROLL_PATH, type ErrorBody } from '../common/enroll-api.js';
import { RollcallError } from '../common/errors.js';
import { parseHostPort, requestJson } from '../common/https-json.js';
import { fetchPinnedCa } from '../common/pinned-tls.js';
import { parseProxyUrl } from '../common/http-proxy.js';
import { certInfo, createCsr, generateKeyPair, isIssuedBy, parsePin, spkiPin } from '../common/pki.js';
import { ROLLCALL_VERSION } from '../common/version.js';
import type { AgentState, Identity } from './state.js';
import { isoTime } from '../common/iso-time.js';

/** Default agent port. */
export const DEFAULT_AGENT_PORT = 2222;

/** Options for {@link enrollAgent}. */
export interface EnrollOptions {
  /** `host:port` entries, tried in order until one enrolls; all are kept for failover. */
  readonly servers: readonly string[];
  readonly caPin: string;
  readonly token: string;
  readonly state: AgentState;
  readonly fingerprint: string;
  readonly hostname?: string;
  /** Replace an existing enrollment in the state directory. */
  readonly force?: boolean;
  readonly timeoutMs?: number;
  /** `http://[user:password@]host:port`: enroll through this proxy, and keep it for `run`. */
  readonly proxy?: string;
}

/** Enrolls this computer; returns the stored identity. */
export async function enrollAgent(opts: EnrollOptions): Promise<Identity> {
  const pin = parsePin(opts.caPin);
  if (opts.servers.length === 0) throw new RollcallError('USAGE', 'at least one server is required');
  if (!opts.force && (await opts.state.isEnrolled())) {
    throw new RollcallError('ALREADY_ENROLLED', `${opts.state.dir} already holds an enrollment; use --force to replace it`);
  }
  const targets = opts.servers.map((s) => ({ server: s, ...parseHostPort(s, DEFAULT_AGENT_PORT) }));
  const proxy = opts.proxy ? parseProxyUrl(opts.proxy) : undefined;
  const keys = generateKeyPair(2048);
  const hostname = (opts.hostname ?? os.hostname()).slice(0, 253) || 'unknown';
  const csr = createCsr(keys.privateKeyPem, hostname);
  const failures: string[] = [];
  let answer: ReturnType<typeof checkEnrollResponse> | undefined;
  let lastError: unknown;
  for (const { server, host, port } of targets) {
    let refusal: RollcallError | undefined;
    try {
      const caPem = await fetchPinnedCa(host, port, pin, opts.timeoutMs, proxy);
      const res = await requestJson({
        host,
        port,
        path: ENROLL_PATH,
        ca: caPem,
        timeoutMs: opts.timeoutMs,
        proxy,
        body: { token: opts.token, csr, hostname, fingerprint: opts.fingerprint, agentVersion: ROLLCALL_VERSION },
      });
      if (res.status === 200) answer = checkEnrollResponse(res.body);
      else {
        const err = (res.body as ErrorBody | undefined)?.error;
        const refused = new RollcallError(err?.code ?? `HTTP_${res.status}`, `enrollment refused: ${err?.message ?? `HTTP ${res.status}`}`, {
          retryable: res.status === 429 || res.status >= 500,
        });
        if (!refused.retryable) refusal = refused;
        else throw refused;
      }
    } catch (err) {
      // A malformed answer from a server that showed the pinned CA is not something another server fixes.
      if (err instanceof RollcallError && err.code === 'ENROLL_BAD_RESPONSE') throw err;
      lastError = err;
      failures.push(`${server}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (refusal) throw refusal; // the server's own answer about this token: the same everywhere
    if (answer) break;
  }
  if (!answer) {
    if (targets.length === 1 && lastError instanceof Error) throw lastError;
    const code = lastError instanceof RollcallError ? lastError.code : 'ENROLL_UNREACHABLE';
    throw new RollcallError(code, `no server enrolled this computer (${failures.join('; ')})`, { retryable: true, cause: lastError });
  }
  if (spkiPin(answer.caCertificate) !== pin || !isIssuedBy(answer.certificate, answer.caCertificate)) {
    throw new RollcallError('ENROLL_BAD_RESPONSE', 'the issued certificate does not chain to the pinned certificate authority');
  }
  const ourKey = crypto.createPublicKey(keys.privateKeyPem).export({ type: 'spki', format: 'pem' }).toString();
  const theirKey = new crypto.X509Certificate(answer.certificate).publicKey.export({ type: 'spki', format: 'pem' }).toString();
  if (ourKey !== theirKey || certInfo(answer.certificate).subjectCommonName !== answer.deviceId) {
    throw new RollcallError('ENROLL_BAD_RESPONSE', 'the issued certificate is not for our key and device id');
  }
  const identity: Identity = {
    deviceId: answer.deviceId,
    servers: [...opts.servers],
    caPin: pin,
    group: answer.group,
    enrolledAt: isoTime(),
    checkinPath: answer.checkinPath,
    ...(opts.proxy ? { proxy: opts.proxy } : {}),
  };
  await opts.state.saveEnrollment({ keyPem: keys.privateKeyPem, certPem: answer.certificate, caPem: answer.caCertificate, identity });
  await opts.state.saveAckedSeq(0);
  return identity;
}
