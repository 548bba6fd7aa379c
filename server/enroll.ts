/**
 * Enrollment: an enrollment token and a CSR in, a device and its
 * certificate out. The token's use is counted and the device inserted in
 * one transaction, so a used-up token can never enroll one device too many.
 */
import crypto from 'node:crypto';
import { ENROLL_TOKEN_PATTERN, type EnrollRequest, type EnrollResponse } from '../common/enroll-api.js';
import { RollcallError } from '../common/errors.js';
import { issueClientCert, parseCsr, type KeyedCert } from '../common/pki.js';
import { CHECKIN_PATH } from '../common/protocol.js';
import { httpError } from './errors.js';
import type { Storage } from './storage/index.js';
import { LOST_FOUND_GROUP_ID } from './storage/migrations.js';
import type { EnrollmentToken } from './storage/tokens-store.js';
import type { GroupWithPath } from './storage/groups-store.js';

/** What enrollment needs. */
export interface EnrollDeps {
  readonly storage: Pick<Storage, 'db' | 'groups' | 'devices' | 'enrollTokens'>;
  readonly ca: KeyedCert;
  readonly now: () => number;
  /** Why a computer cannot go into a group (it then lands in Lost & found), or null. */
  readonly placementProblem?: (group: GroupWithPath) => Promise<string | null>;
  /** Lifetime of the issued certificate in seconds (default 825 days). */
  readonly certValiditySec?: number;
}

function tokenProblem(t: EnrollmentToken, now: number): RollcallError | undefined {
  if (t.revokedAt !== null) return httpError('ENROLL_TOKEN_REVOKED', 'the enrollment token was revoked');
  if (t.expiresAt !== null && t.expiresAt <= now) return httpError('ENROLL_TOKEN_EXPIRED', 'the enrollment token has expired');
  if (t.maxUses !== null && t.uses >= t.maxUses) return httpError('ENROLL_TOKEN_USED_UP', 'the enrollment token has no uses left');
  return undefined;
}

/** Enrolls one agent; throws RollcallError with a SERVER_ERRORS code. */
export async function enroll(req: EnrollRequest, deps: EnrollDeps): Promise<EnrollResponse> {
  if (!ENROLL_TOKEN_PATTERN.test(req.token)) throw httpError('ENROLL_TOKEN_MALFORMED', 'the enrollment token is malformed');
  const now = deps.now();
  const token = await deps.storage.enrollTokens.findBySecret(req.token);
  if (!token) throw httpError('ENROLL_TOKEN_UNKNOWN', 'the enrollment token is not known to this server');
  const problem = tokenProblem(token, now);
  if (problem) throw problem;
  const csr = parseCsr(req.csr);
  const deviceId = `dev_${crypto.randomBytes(10).toString('hex')}`;
  const issued = issueClientCert(deps.ca, { publicKeyPem: csr.publicKeyPem, deviceId, now: new Date(now), validitySec: deps.certValiditySec });

  const groups = await deps.storage.groups.list();
  const target = token.groupId ? groups.find((g) => g.id === token.groupId) : undefined;
  const blocked = target && deps.placementProblem ? await deps.placementProblem(target) : null;
  const placed = target && !blocked ? target : undefined;
  const group = placed ?? groups.find((g) => g.id === LOST_FOUND_GROUP_ID)!;
  const placementReason = placed ? null : (blocked ?? "the enrollment token's group no longer exists");

  await deps.storage.db.transaction(async (tx) => {
    if (!(await deps.storage.enrollTokens.consume(token.id, now, tx))) {
      const fresh = await deps.storage.enrollTokens.get(token.id, tx);
      throw (fresh && tokenProblem(fresh, now)) ?? httpError('ENROLL_TOKEN_USED_UP', 'the enrollment token has no uses left');
    }
    await deps.storage.devices.insert(
      {
        id: deviceId,
        certSerial: issued.serial,
        certNotAfter: issued.notAfter.getTime(),
        groupId: group.id,
        placementReason,
        hostname: req.hostname,
        fingerprint: req.fingerprint,
        agentVersion: req.agentVersion,
        enrolledAt: now,
        tokenId: token.id,
      },
      tx,
    );
  });
  return {
    deviceId,
    certificate: issued.certPem,
    caCertificate: deps.ca.certPem,
    group: { id: group.id, path: group.path },
    placementReason,
    checkinPath: CHECKIN_PATH,
  };
}
