/**
 * Certificate renewal on the agent (protocol 3). When the certificate in
 * use has less than a third of its lifetime left (at most 30 days before
 * it expires), the agent makes a new key here, sends a CSR over the live
 * channel, checks the answer (our key, our device id, our CA) and keeps
 * the new pair beside the old one (`agent.next.key` / `agent.next.crt`).
 * The supervisor connects with the new pair next and makes it current only
 * once it reached `welcome`; until then the old pair stays and works.
 */
import crypto from 'node:crypto';
import { promisify } from 'node:util';
import { RollcallError } from '../common/errors.js';
import { certInfo, createCsr, isIssuedBy } from '../common/pki.js';
import type { RenewalHook } from './connection.js';
import { keyMatchesCert, type AgentState } from './state.js';

const generateKeyPair = promisify(crypto.generateKeyPair);

/** Most time before expiry at which renewal starts. */
export const MAX_RENEW_BEFORE_MS = 30 * 86_400_000;

/** When a certificate valid from `notBefore` to `notAfter` should be renewed. */
export function renewAt(notBefore: Date, notAfter: Date): number {
  const lifetime = notAfter.getTime() - notBefore.getTime();
  return notAfter.getTime() - Math.min(MAX_RENEW_BEFORE_MS, Math.floor(lifetime / 3));
}

/** Renewal of one certificate (the one the channel uses). */
export class CertRenewal implements RenewalHook {
  private keyPem: string | null = null;
  private readonly due_: number;
  private forced = false;

  constructor(
    private readonly state: AgentState,
    private readonly current: { readonly certPem: string; readonly caPems: readonly string[]; readonly deviceId: string },
    private readonly now: () => number = Date.now,
  ) {
    const info = certInfo(current.certPem);
    this.due_ = renewAt(info.notBefore, info.notAfter);
  }

  /** When renewal is due, Unix ms (for status). */
  get dueAt(): number {
    return this.due_;
  }

  due(): boolean {
    return this.forced || this.now() >= this.due_;
  }

  /** Renew at the next chance whatever the lifetime left (the server's CA changed). */
  forceDue(): void {
    this.forced = true;
  }

  async request(): Promise<string> {
    const { privateKey } = await generateKeyPair('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
    this.keyPem = privateKey;
    return createCsr(privateKey, this.current.deviceId);
  }

  async accept(certPem: string): Promise<void> {
    const keyPem = this.keyPem;
    if (!keyPem) throw new RollcallError('RENEW_BAD_RESPONSE', 'a renewed certificate arrived without a request');
    let info: ReturnType<typeof certInfo>;
    try {
      info = certInfo(certPem);
    } catch (err) {
      throw new RollcallError('RENEW_BAD_RESPONSE', 'the renewed certificate cannot be read', { cause: err });
    }
    if (!keyMatchesCert(keyPem, certPem)) throw new RollcallError('RENEW_BAD_RESPONSE', 'the renewed certificate is not for our new key');
    if (info.subjectCommonName !== this.current.deviceId) throw new RollcallError('RENEW_BAD_RESPONSE', `the renewed certificate names ${info.subjectCommonName}, not this device`);
    if (!this.current.caPems.some((ca) => isIssuedBy(certPem, ca))) throw new RollcallError('RENEW_BAD_RESPONSE', 'the renewed certificate does not come from a trusted CA');
    await this.state.saveRenewed(keyPem, certPem);
    this.keyPem = null;
  }
}
