/**
 * Finds the TypeScript code blocks of the documentation (README.md and docs/*.md) and what the
 * comment before each says about checking it. Used by scripts/check-snippets.mjs (`npm run
 * check:docs`, which typechecks them) and tests/integration/readme-quickstarts.test.ts (which runs
 * the ones marked `run`).
 *
 * A ```ts or ```typescript block is checked. The line just before its fence (blank lines allowed
 * in between) may be a comment that says how:
 *
 *   <!-- snippet: complete -->          a whole file: typechecked alone, with no shared declarations
 *   <!-- snippet: complete, run -->     ...and run against a real database by the test; the first
 *                                       ```text block after it is its expected output
 *   <!-- snippet: prelude=kysely -->    a fragment: scripts/snippets/preludes/kysely.ts is put in
 *                                       front of it (declarations it needs: a schema, an entity)
 *   <!-- snippet: skip <reason> -->     not checked; the reason is required and printed
 *
 * A block with no comment is a fragment: it is typechecked with the shared declarations of
 * scripts/snippets/globals.d.ts (`db`, `pool`, `owner`, ...), which complete blocks never see.
 * `prelude=imports` adds the usual imports (pg, pg-tenant and its adapters, Express, Fastify).
 */
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** The repository's root. */
export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

/** The documentation files whose blocks are checked, relative to the root. */
export function documentationFiles() {
  const docs = fs.existsSync(path.join(root, 'docs'))
    ? fs.readdirSync(path.join(root, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)
    : []
  return ['README.md', ...docs]
}

const TS_LANGS = new Set(['ts', 'typescript'])
const DIRECTIVE = /^\s*<!--\s*snippet:\s*(.*?)\s*-->\s*$/

/**
 * Parses a directive's text into `{ complete, run, prelude, skip }`; throws on anything unknown,
 * so that a typo never turns a check off silently.
 */
export function parseDirective(text, where) {
  const directive = { complete: false, run: false, prelude: undefined, skip: undefined }
  const skip = /^skip\b\s*(.*)$/.exec(text)
  if (skip) {
    if (skip[1].trim() === '') throw new Error(`${where}: "snippet: skip" needs a reason`)
    directive.skip = skip[1].trim()
    return directive
  }
  for (const token of text.split(',').map((t) => t.trim()).filter(Boolean)) {
    if (token === 'complete') directive.complete = true
    else if (token === 'run') directive.run = true
    else if (token.startsWith('prelude=') && /^prelude=[a-z0-9-]+$/.test(token)) directive.prelude = token.slice(8)
    else throw new Error(`${where}: unknown snippet directive ${JSON.stringify(token)}`)
  }
  if (directive.run && !directive.complete) throw new Error(`${where}: "run" needs "complete"`)
  if (directive.prelude && directive.complete) throw new Error(`${where}: a complete block takes no prelude`)
  return directive
}

/**
 * Every fenced block of `markdown`: `{ file, line, lang, code, directive, expected }`. `line` is
 * the 1-based line of the opening fence; `code` is the block's text with the fence's indentation
 * removed; `expected` (for `run` blocks) is the text of the first ```text block after it.
 */
export function extractBlocks(markdown, file) {
  const lines = markdown.split('\n')
  const blocks = []
  let pending // a directive waiting for its block: { text, line }
  for (let i = 0; i < lines.length; i++) {
    const fence = /^(\s*)(`{3,}|~{3,})\s*([\w+-]*)/.exec(lines[i])
    if (!fence) {
      const d = DIRECTIVE.exec(lines[i])
      if (d) {
        if (pending) throw new Error(`${file}:${pending.line}: snippet directive followed by no code block`)
        pending = { text: d[1], line: i + 1 }
      } else if (lines[i].trim() !== '' && pending) {
        throw new Error(`${file}:${pending.line}: snippet directive not directly before a code block`)
      }
      continue
    }
    const [, indent, marker, lang] = fence
    const start = i
    const body = []
    for (i = i + 1; i < lines.length; i++) {
      const close = new RegExp(`^\\s*${marker[0] === '`' ? '`' : '~'}{${marker.length},}\\s*$`)
      if (close.test(lines[i])) break
      body.push(lines[i].startsWith(indent) ? lines[i].slice(indent.length) : lines[i].trimStart())
    }
    const where = `${file}:${start + 1}`
    const isTs = TS_LANGS.has(lang.toLowerCase())
    if (pending && !isTs) throw new Error(`${file}:${pending.line}: snippet directive before a \`\`\`${lang || '(no language)'} block`)
    const directive = pending ? parseDirective(pending.text, where) : parseDirective('', where)
    pending = undefined
    blocks.push({ file, line: start + 1, lang: lang.toLowerCase(), code: body.join('\n') + '\n', directive })
  }
  if (pending) throw new Error(`${file}:${pending.line}: snippet directive followed by no code block`)
  // The expected output of each `run` block: the next ```text block, before any other ts block.
  for (const [k, block] of blocks.entries()) {
    if (!block.directive.run) continue
    const next = blocks.slice(k + 1).find((b) => b.lang === 'text' || TS_LANGS.has(b.lang))
    if (!next || next.lang !== 'text') throw new Error(`${block.file}:${block.line}: a "run" block needs a \`\`\`text block of its expected output after it`)
    block.expected = next.code
  }
  return blocks.filter((b) => TS_LANGS.has(b.lang))
}

/** The TypeScript blocks of `files` (paths relative to the root; default: every documentation file). */
export function documentationBlocks(files = documentationFiles()) {
  return files.flatMap((file) => extractBlocks(fs.readFileSync(path.resolve(root, file), 'utf8'), file))
}
