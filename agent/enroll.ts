/**
 * Enrollment on the endpoint: make a key pair here (the private key never
 * leaves this computer), fetch the CA by its pin, send a CSR with the
 * enrollment token, check what comes back, and store it.
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
  /** `host:port` entries; the first is used to enroll, all are kept for failover. */
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
  const { host, port } = parseHostPort(opts.servers[0]!, DEFAULT_AGENT_PORT);
  const proxy = opts.proxy ? parseProxyUrl(opts.proxy) : undefined;
  const caPem = await fetchPinnedCa(host, port, pin, opts.timeoutMs, proxy);
  const keys = generateKeyPair(2048);
  const hostname = (opts.hostname ?? os.hostname()).slice(0, 253) || 'unknown';
  const res = await requestJson({
    host,
    port,
    path: ENROLL_PATH,
    ca: caPem,
    timeoutMs: opts.timeoutMs,
    proxy,
    body: { token: opts.token, csr: createCsr(keys.privateKeyPem, hostname), hostname, fingerprint: opts.fingerprint, agentVersion: ROLLCALL_VERSION },
  });
  if (res.status !== 200) {
    const err = (res.body as ErrorBody | undefined)?.error;
    throw new RollcallError(err?.code ?? `HTTP_${res.status}`, `enrollment refused: ${err?.message ?? `HTTP ${res.status}`}`, {
      retryable: res.status === 429 || res.status >= 500,
    });
  }
  const answer = checkEnrollResponse(res.body);
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
