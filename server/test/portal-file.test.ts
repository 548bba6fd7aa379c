import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RollcallError } from '../../common/errors.js';
import { MAX_TREE_EXPORT_BYTES, parseTreeExport, readTreeExport } from '../msp/portal-file.js';
import { EntityType, validateTree } from '../msp/tree.js';

const examplePath = path.resolve(import.meta.dirname, '../../docs/examples/msp-tree.json');
let example: Record<string, unknown>;
let dir: string;

beforeAll(async () => {
  example = JSON.parse(await fs.readFile(examplePath, 'utf8')) as Record<string, unknown>;
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rollcall-tree-export-'));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** The example, changed by `edit` (which gets a deep copy). */
function variant(edit: (doc: { account: Record<string, unknown>; companies: Record<string, unknown>[] } & Record<string, unknown>) => void): string {
  const doc = structuredClone(example) as Parameters<typeof edit>[0];
  edit(doc);
  return JSON.stringify(doc);
}

function refusal(run: () => unknown): RollcallError {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(RollcallError);
    return err as RollcallError;
  }
  throw new Error('expected a refusal');
}

async function asyncRefusal(run: Promise<unknown>): Promise<RollcallError> {
  const err = await run.then(() => new Error('expected a refusal'), (e: unknown) => e);
  expect(err).toBeInstanceOf(RollcallError);
  return err as RollcallError;
}

describe('parseTreeExport', () => {
  it('parses the documented example: 1 MSP Manager, 2 managed MSPs, 5 customers', async () => {
    const tree = validateTree(await readTreeExport(examplePath));
    expect(tree.account).toMatchObject({ name: 'Northwind MSP Manager', type: EntityType.MSP_MANAGER, parentId: null });
    expect(tree.companies.filter((c) => c.type === EntityType.MANAGED_MSP)).toHaveLength(2);
    const customers = tree.companies.filter((c) => c.type === EntityType.CUSTOMER);
    expect(customers).toHaveLength(5);
    const msps = new Set(tree.companies.filter((c) => c.type === EntityType.MANAGED_MSP).map((c) => c.id));
    expect(customers.every((c) => msps.has(c.parentId!))).toBe(true);
  });

  it('fills a missing status with "Active" and a missing email with null, and keeps unknown statuses', () => {
    const tree = parseTreeExport(variant((d) => {
      delete d.account.status;
      delete d.companies[0]!.email;
      d.companies[1]!.status = 'SomethingNew';
    }));
    expect(tree.account.status).toBe('Active');
    expect(tree.companies[0]!.email).toBeNull();
    expect(tree.companies[1]!.status).toBe('SomethingNew');
  });

  it('accepts a leading byte-order mark', () => {
    expect(parseTreeExport(`\uFEFF${JSON.stringify(example)}`).companies).toHaveLength(7);
  });

  it.each([
    ['text that is not JSON', () => 'format: rollcall', 'is not valid JSON'],
    ['JSON broken on line 3', () => '{\n  "format": "rollcall-msp-tree",\n  "version": ]\n}', 'unexpected "]\\n}" at line 3, column 14'],
    ['JSON that ends too early', () => JSON.stringify(example).slice(0, 200), 'the text ends too early at line 1, column 201'],
    ['JSON with a trailing comma', () => '{"format": "rollcall-msp-tree", "version": 1,\n}', 'unexpected "}" at line 2, column 1'],
    ['a JSON array', () => '[]', 'is not a JSON object'],
    ['another format', () => variant((d) => (d.format = 'eset-export')), '"format" must be "rollcall-msp-tree"'],
    ['no format', () => variant((d) => delete d.format), '"format" must be "rollcall-msp-tree" (got null)'],
    ['version 2', () => variant((d) => (d.version = 2)), 'has version 2; this Rollcall reads version 1 only'],
    ['an unknown portal', () => variant((d) => (d.portal = 'cloud')), 'portal must be one of msp, business'],
    ['no account', () => variant((d) => Reflect.deleteProperty(d, 'account')), 'the document is missing the field "account"'],
    ['no companies', () => variant((d) => Reflect.deleteProperty(d, 'companies')), 'the document is missing the field "companies"'],
    ['a company without parentId', () => variant((d) => delete d.companies[1]!.parentId), 'companies[1] (id "3f2a9c1e-0003-4b7e-9a10-6d5c2b8e7f03") is missing the field "parentId"'],
    ['a company without a name', () => variant((d) => delete d.companies[2]!.name), 'companies[2] (id "3f2a9c1e-0101-4b7e-9a10-6d5c2b8e7f11") is missing the field "name"'],
    ['a type given as text', () => variant((d) => (d.companies[0]!.type = '1006')), 'companies[0] (id "3f2a9c1e-0002-4b7e-9a10-6d5c2b8e7f02").type must be integer'],
    ['an unknown entity type', () => variant((d) => (d.companies[3]!.type = 1008)), '.type must be <= 1007'],
    ['a customer as the account', () => variant((d) => (d.account.type = 1007)), 'account.type must be one of 1004, 1005, 1006'],
    ['an email that is a number', () => variant((d) => (d.companies[4]!.email = 42)), 'companies[4] (id "3f2a9c1e-0103-4b7e-9a10-6d5c2b8e7f13").email must be string,null'],
    ['an empty id', () => variant((d) => (d.companies[5]!.id = '')), 'companies[5].id must NOT have fewer than 1 characters'],
    ['a name of 300 characters', () => variant((d) => (d.account.name = 'x'.repeat(300))), 'account.name must NOT have more than 256 characters'],
    ['a misspelt field', () => variant((d) => (d.companies[6]!.parentID = 'x')), 'has an unknown field "parentID"'],
    ['an unknown top-level field', () => variant((d) => (d.groups = [])), 'the document has an unknown field "groups"'],
    ['companies that are not a list', () => variant((d) => (d.companies = {} as never)), 'companies must be array'],
  ])('refuses %s with SYNC_FILE_INVALID saying where', (_what, text, where) => {
    const err = refusal(() => parseTreeExport(text(), 'tree.json'));
    expect(err.code).toBe('SYNC_FILE_INVALID');
    expect(err.message.startsWith('tree.json: ')).toBe(true);
    expect(err.message).toContain(where);
  });

  it('refuses text larger than 64 MiB before parsing it', () => {
    const text = `${' '.repeat(MAX_TREE_EXPORT_BYTES)}{}`;
    const err = refusal(() => parseTreeExport(text, 'big.json'));
    expect(err.code).toBe('SYNC_FILE_INVALID');
    expect(err.message).toContain(`at most ${MAX_TREE_EXPORT_BYTES} are accepted`);
  });
});

describe('readTreeExport', () => {
  it('refuses a file above the size cap by its size, before reading it', async () => {
    const file = path.join(dir, 'big.json');
    await fs.writeFile(file, JSON.stringify(example));
    const err = await asyncRefusal(readTreeExport(file, 1024));
    expect(err.code).toBe('SYNC_FILE_INVALID');
    expect(err.message).toMatch(/big\.json: is \d+ bytes long; at most 1024 are accepted/);
  });

  it('refuses a file that is not UTF-8', async () => {
    const file = path.join(dir, 'latin1.json');
    await fs.writeFile(file, Buffer.from([0x7b, 0x22, 0xe9, 0x22, 0x7d]));
    const err = await asyncRefusal(readTreeExport(file));
    expect([err.code, err.message]).toEqual(['SYNC_FILE_INVALID', `${file}: is not UTF-8 text`]);
  });

  it('says SYNC_FILE_UNREADABLE for a missing file and for a directory', async () => {
    const missing = await asyncRefusal(readTreeExport(path.join(dir, 'nope.json')));
    expect(missing.code).toBe('SYNC_FILE_UNREADABLE');
    expect(missing.message).toContain('ENOENT');
    const folder = await asyncRefusal(readTreeExport(dir));
    expect(folder.code).toBe('SYNC_FILE_UNREADABLE');
    expect(folder.message).toContain('not a regular file');
  });

  it('names the file in content errors', async () => {
    const file = path.join(dir, 'v2.json');
    await fs.writeFile(file, variant((d) => (d.version = 2)));
    const err = await asyncRefusal(readTreeExport(file));
    expect(err.message).toBe(`${file}: has version 2; this Rollcall reads version 1 only`);
  });
});
