/**
 * docs/benchmarks.md holds one section per bench mode, each between its own
 * markers (`<!-- bench:checkin:start -->` … `<!-- bench:checkin:end -->`).
 * A run replaces only its own section and keeps the others, byte for byte,
 * so the connect bench and the sync bench can be rerun apart.
 */
import fs from 'node:fs/promises';
import path from 'node:path';

/** The sections, in the order they appear in a file. */
export const SECTIONS = ['checkin', 'sync', 'health', 'console', 'agent', 'scale'] as const;
/** One section's name. */
export type SectionName = (typeof SECTIONS)[number];

/** What a new file starts with, before its sections. */
export const DOC_PREAMBLE = [
  '# Benchmarks',
  '',
  '_Written by `npm run bench` (scripts/bench.ts); rerun it rather than editing this file. Each mode replaces only its ' +
    'own section: `npm run bench` the connect and check-in comparison, `npm run bench -- sync` the MSP sync under load._',
  '',
].join('\n');

function markers(name: SectionName): { start: string; end: string } {
  return { start: `<!-- bench:${name}:start -->`, end: `<!-- bench:${name}:end -->` };
}

function count(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

/** Where a section's markers are, or undefined when it has none; throws when they are broken. */
function locate(doc: string, name: SectionName): { from: number; to: number } | undefined {
  const { start, end } = markers(name);
  const starts = count(doc, start);
  const ends = count(doc, end);
  if (starts === 0 && ends === 0) return undefined;
  const from = doc.indexOf(start);
  const to = doc.indexOf(end);
  if (starts !== 1 || ends !== 1 || to < from) {
    throw new Error(`the ${name} section's markers are broken (${starts} start and ${ends} end markers); fix the file by hand`);
  }
  return { from, to: to + end.length };
}

/**
 * Puts `body` into section `name` of `doc` (undefined or empty: a new file)
 * and returns the new text. Everything outside that section stays as it
 * was. A missing section goes before the first later section in
 * {@link SECTIONS}, else at the end. Pure.
 */
export function replaceSection(doc: string | undefined, name: SectionName, body: string): string {
  const { start, end } = markers(name);
  const block = `${start}\n${body.trim()}\n${end}`;
  const text = doc === undefined || doc.trim() === '' ? `${DOC_PREAMBLE}\n` : doc;
  const own = locate(text, name);
  if (own) return text.slice(0, own.from) + block + text.slice(own.to);
  for (const s of SECTIONS) locate(text, s); // refuse to write into a file whose other markers are broken
  const later = SECTIONS.slice(SECTIONS.indexOf(name) + 1)
    .map((s) => locate(text, s))
    .find((at) => at !== undefined);
  if (later) return `${text.slice(0, later.from)}${block}\n\n${text.slice(later.from)}`;
  return `${text.trimEnd()}\n\n${block}\n`;
}

/** The body of section `name` in `doc`, without its markers, or undefined. Pure. */
export function readSection(doc: string, name: SectionName): string | undefined {
  const at = locate(doc, name);
  if (!at) return undefined;
  const { start, end } = markers(name);
  return doc.slice(at.from + start.length, at.to - end.length).trim();
}

/** Rewrites section `name` of `file` (created, with its directory, if missing), through a temporary file and a rename. */
export async function writeSection(file: string, name: SectionName, body: string): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  let doc: string | undefined;
  try {
    doc = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await fs.writeFile(`${file}.tmp`, replaceSection(doc, name, body));
  await fs.rename(`${file}.tmp`, file);
}
