/**
 * Runs once per test run: makes the test PKI with our own PKI code (a test
 * CA with its server certificate, and a second, foreign CA) and shares the
 * directory with every test file through an environment variable.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createCa, issueServerCert } from '../../common/pki.js';

export default async function setup(): Promise<() => Promise<void>> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rollcall-test-pki-'));
  const ca = createCa({ commonName: 'Rollcall Test CA' });
  const server = issueServerCert(ca, { hosts: ['localhost', '127.0.0.1'] });
  const foreign = createCa({ commonName: 'Someone Else CA' });
  await fs.writeFile(path.join(dir, 'ca.crt'), ca.certPem);
  await fs.writeFile(path.join(dir, 'ca.key'), ca.keyPem, { mode: 0o600 });
  await fs.writeFile(path.join(dir, 'server.crt'), server.certPem);
  await fs.writeFile(path.join(dir, 'server.key'), server.keyPem, { mode: 0o600 });
  await fs.writeFile(path.join(dir, 'foreign-ca.crt'), foreign.certPem);
  await fs.writeFile(path.join(dir, 'foreign-ca.key'), foreign.keyPem, { mode: 0o600 });
  process.env.ROLLCALL_TEST_PKI_DIR = dir;
  return async () => {
    await fs.rm(dir, { recursive: true, force: true });
  };
}
