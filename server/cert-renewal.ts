/**
 * Certificate renewal over the live channel (protocol 3): the agent sends a
 * CSR for a new key; the server checks it as enrollment does (well-formed,
 * RSA >= 2048 bits, self-signature), checks the device is still enrolled
 * and not revoked, issues a certificate with the same device id, and keeps
 * it pending. The old certificate keeps working until the new one is used
 * to connect (see agent-listener.ts), so an agent that never saw the answer
 * loses nothing.
 */
import { RollcallError } from '../common/errors.js';
import { issueClientCert, parseCsr, type KeyedCert } from '../common/pki.js';
import type { Storage } from './storage/index.js';

/** What renewal needs. */
export interface RenewalDeps {
  readonly storage: Pick<Storage, 'devices' | 'certRenewals'>;
  readonly ca: () => KeyedCert;
  readonly now: () => number;
  readonly validitySec: number;
}

/** Issues a renewed certificate for a device; throws RollcallError (CSR_*, DEVICE_REVOKED, DEVICE_NOT_FOUND). */
export async function renewCertificate(deps: RenewalDeps, deviceId: string, csrPem: string): Promise<string> {
  const csr = parseCsr(csrPem);
  const device = await deps.storage.devices.get(deviceId);
  if (!device) throw new RollcallError('DEVICE_NOT_FOUND', 'the device no longer exists');
  if (device.revokedAt !== null) throw new RollcallError('DEVICE_REVOKED', 'the device was revoked');
  const now = deps.now();
  const issued = issueClientCert(deps.ca(), { publicKeyPem: csr.publicKeyPem, deviceId, now: new Date(now), validitySec: deps.validitySec });
  await deps.storage.certRenewals.add({ serial: issued.serial, deviceId, notAfter: issued.notAfter.getTime(), issuedAt: now });
  return issued.certPem;
}
