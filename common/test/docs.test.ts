import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AGENT_EXIT } from '../../agent/cli.js';
import { FAILURE_CLASSES } from '../../agent/errors.js';
import { CLI_EXIT } from '../../server/cli.js';
import { PORTCHECK_EXIT } from '../../server/cli-portcheck.js';
import { SERVER_ERRORS } from '../../server/errors.js';
import { CloseCode } from '../close-codes.js';
import { PORTCHECK_FAILURES } from '../portcheck/types.js';

const root = path.resolve(import.meta.dirname, '../..');
const errorsDoc = fs.readFileSync(path.join(root, 'docs/errors.md'), 'utf8');

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'test' ? [] : sourceFiles(rel);
    return e.name.endsWith('.ts') ? [rel] : [];
  });
}

/** Every error code the source raises: RollcallError / httpError constructors and failure codes. */
function codesInSource(): Set<string> {
  const codes = new Set<string>();
  for (const file of ['common', 'server', 'agent'].flatMap(sourceFiles)) {
    const text = fs.readFileSync(path.join(root, file), 'utf8');
    for (const m of text.matchAll(/(?:RollcallError|httpError)\(\s*'([A-Z0-9_]+)'/g)) codes.add(m[1]!);
    for (const m of text.matchAll(/\bcode: '([A-Z0-9_]+)'/g)) codes.add(m[1]!);
    for (const m of text.matchAll(/fail\(\s*CloseCode\.[A-Z_]+,\s*'([A-Z0-9_]+)'/g)) codes.add(m[1]!);
  }
  return codes;
}

/** Backticked upper-case names in the first or second column of the doc's tables. */
function codesInDocTables(): Set<string> {
  const codes = new Set<string>();
  for (const line of errorsDoc.split('\n')) {
    if (!line.startsWith('|')) continue;
    const cells = line.split('|').slice(1, 3);
    for (const cell of cells) for (const m of cell.matchAll(/`([A-Z][A-Z0-9_]+)`/g)) codes.add(m[1]!);
  }
  return codes;
}

describe('docs/errors.md', () => {
  it('lists every close code with its number and name', () => {
    for (const [name, value] of Object.entries(CloseCode)) expect(errorsDoc, name).toContain(`| ${value} | \`${name}\` |`);
  });

  it('lists every HTTP error code with its status', () => {
    for (const [code, status] of Object.entries(SERVER_ERRORS)) expect(errorsDoc, code).toMatch(new RegExp(`\\| \`${code}\` \\| ${status} \\|`));
  });

  it('lists every exit code of both programs', () => {
    for (const [name, value] of Object.entries(CLI_EXIT)) expect(errorsDoc, `rollcall ${name}`).toContain(`| ${value} | \`${name}\` |`);
    for (const [name, value] of Object.entries(AGENT_EXIT)) expect(errorsDoc, `rollcall-agent ${name}`).toContain(`| ${value} | \`${name}\` |`);
  });

  it('lists every exit code of rollcall portcheck and every port-check failure class with its step', () => {
    for (const [name, value] of Object.entries(PORTCHECK_EXIT)) expect(errorsDoc, `portcheck ${name}`).toContain(`| ${value} | \`${name}\` |`);
    for (const [name, f] of Object.entries(PORTCHECK_FAILURES)) expect(errorsDoc, name).toContain(`| \`${name}\` | ${f.step} |`);
  });

  it('lists every agent failure class', () => {
    for (const c of FAILURE_CLASSES) expect(errorsDoc, c).toContain(`| \`${c}\` |`);
  });

  it('documents every error code the source raises', () => {
    const documented = new Set([...errorsDoc.matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((m) => m[1]!));
    const missing = [...codesInSource()].filter((c) => !documented.has(c));
    expect(missing).toEqual([]);
  });

  it('documents no code that no longer exists', () => {
    const known = new Set<string>([
      ...codesInSource(),
      ...Object.keys(CloseCode),
      ...Object.keys(SERVER_ERRORS),
      ...Object.keys(CLI_EXIT),
      ...Object.keys(AGENT_EXIT),
      ...Object.keys(PORTCHECK_EXIT),
      ...Object.keys(PORTCHECK_FAILURES),
      ...FAILURE_CLASSES,
    ]);
    const stale = [...codesInDocTables()].filter((c) => !known.has(c));
    expect(stale).toEqual([]);
  });
});
