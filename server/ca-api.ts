/**
 * Console API of CA rotation: `GET /api/v1/ca` (pins and the cutover) and
 * `POST /api/v1/ca/rotate` `{ overlapSec }`. Routes are listed in
 * docs/api.md; the procedure in docs/operations.md.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { CaRotation, CaStatus } from './ca-rotation.js';
import type { HttpsApp } from './http-common.js';

const RotateBody = Type.Object({ overlapSec: Type.Integer({ minimum: 1, maximum: 365 * 86_400 }) }, { additionalProperties: false });

/** Registers the CA routes (behind the console's token check). */
export function registerCaRoutes(app: HttpsApp, ca: CaRotation): void {
  app.get('/api/v1/ca', async (): Promise<CaStatus> => ca.status());
  app.post<{ Body: Static<typeof RotateBody> }>('/api/v1/ca/rotate', { schema: { body: RotateBody } }, async (req): Promise<CaStatus> => ca.rotate(req.body.overlapSec * 1000));
}
