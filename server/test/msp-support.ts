/**
 * Helpers for the MSP tests: writing tree exports to files, reading groups.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { PortalCompany } from '../msp/tree.js';
import type { TestServer } from '../../test/support/harness.js';

/** The account used by the MSP tests. */
export const ACCOUNT = { id: 'acct-1', name: 'Northwind', type: 1004, status: 'Active', email: null } as const;

/** A company entry of an export. */
export const company = (id: string, parentId: string, type = 1007, name = `Customer ${id}`, status = 'Active'): PortalCompany => ({
  id,
  name,
  type,
  parentId,
  status,
  email: null,
});

/** Writes an export file (format version 1) and returns its path. */
export async function writeExport(
  dir: string,
  companies: readonly PortalCompany[],
  file = 'tree.json',
  account: object = ACCOUNT,
  portal: 'msp' | 'business' = file.startsWith('business') ? 'business' : 'msp',
): Promise<string> {
  const p = path.join(dir, file);
  await fs.writeFile(p, JSON.stringify({ format: 'rollcall-msp-tree', version: 1, portal, account, companies }));
  return p;
}

/** Group paths of the server, sorted. */
export async function groupPaths(s: TestServer): Promise<string[]> {
  const res = await s.api<{ groups: { path: string }[] }>('GET', '/api/v1/groups');
  return res.body.groups.map((g) => g.path).sort();
}

/** A dump of the synced tree's tables, to prove that nothing was written. */
export async function treeDump(s: TestServer): Promise<string> {
  const db = s.server.storage.db;
  return JSON.stringify([await db.all('SELECT * FROM groups ORDER BY id'), await db.all('SELECT * FROM msp_companies ORDER BY group_id'), await db.all('SELECT * FROM msp_accounts')]);
}
