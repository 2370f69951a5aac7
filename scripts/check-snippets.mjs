#!/usr/bin/env node
/**
 * `npm run check:docs`: typechecks every ```ts / ```typescript block of README.md and docs/*.md
 * under `strict`, so that a renamed option or export breaks the build instead of the docs.
 *
 * The blocks are written to .snippets/check/ (git-ignored, inside the repository so that
 * node_modules resolves), `pg-tenant`, `pg-tenant/express`, `pg-tenant/fastify` and
 * `pg-tenant/doctor` are mapped to src/ by a generated tsconfig, and `tsc` runs twice: once over
 * the complete blocks alone, once over the fragments with the shared declarations of
 * scripts/snippets/globals.d.ts. How a block is marked: see scripts/snippets.mjs.
 *
 * Prints how many blocks were checked and skipped (with the reasons); exits 1 listing file:line
 * of each failing block. Usage: node scripts/check-snippets.mjs [file.md ...] (default: README.md
 * and docs/*.md; other files are for tests of this script).
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { documentationBlocks, root } from './snippets.mjs'
import { generatePrismaClient } from './prisma-generate.mjs'

// Given files (a test of this script): a directory of this run's own, removed at the end.
const given = process.argv.slice(2)
const out = path.join(root, given.length > 0 ? `.snippets/check-${process.pid}` : '.snippets/check')
const preludeDir = path.join(root, 'scripts/snippets/preludes')
const require = createRequire(path.join(root, 'package.json'))
const tsc = require.resolve('typescript/bin/tsc')

let blocks
try {
  blocks = documentationBlocks(given.length > 0 ? given : undefined)
} catch (err) {
  console.error(`check:docs: ${err.message}`)
  process.exit(1)
}

fs.rmSync(out, { recursive: true, force: true })
const groups = { complete: [], fragments: [] }
const skipped = []
for (const block of blocks) {
  if (block.directive.skip) {
    skipped.push(block)
    continue
  }
  const group = block.directive.complete ? 'complete' : 'fragments'
  let prelude = ''
  if (block.directive.prelude) {
    const file = path.join(preludeDir, `${block.directive.prelude}.ts`)
    if (!fs.existsSync(file)) {
      console.error(`check:docs: ${block.file}:${block.line}: no prelude scripts/snippets/preludes/${block.directive.prelude}.ts`)
      process.exit(1)
    }
    prelude = fs.readFileSync(file, 'utf8').replace(/\n?$/, '\n')
  }
  const name = `${block.file.replace(/\.md$/, '').replaceAll('/', '-')}-L${block.line}.ts`
  // `export {}` makes every block a module: its own scope, and top-level await allowed.
  const text = `${prelude}${block.code}\nexport {}\n`
  fs.mkdirSync(path.join(out, group), { recursive: true })
  fs.writeFileSync(path.join(out, group, name), text)
  groups[group].push({ ...block, name, offset: prelude.split('\n').length - 1 })
}

// The ORM recipes import a Prisma client generated next to them ('./generated/client.js'): the
// test suite's, generated from the same schema (tests/setup/prisma/schema.prisma).
generatePrismaClient()
for (const group of Object.keys(groups)) {
  const dir = path.join(out, group, 'generated')
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, 'client.ts'), "export * from '../../../../tests/setup/prisma/generated/client.js'\n")
}

const entries = {
  'pg-tenant': 'src/index.ts',
  'pg-tenant/express': 'src/adapters/express.ts',
  'pg-tenant/fastify': 'src/adapters/fastify.ts',
  'pg-tenant/doctor': 'src/doctor/index.ts',
  'pg-tenant/testing': 'src/testing/index.ts',
}

function writeTsconfig(group, files) {
  const config = {
    compilerOptions: {
      strict: true,
      noEmit: true,
      target: 'ES2022',
      lib: ['ES2024'],
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      types: ['node'],
      esModuleInterop: true,
      skipLibCheck: true,
      ignoreDeprecations: '6.0',
      paths: Object.fromEntries(Object.entries(entries).map(([name, file]) => [name, [`../../../${file}`]])),
    },
    files,
  }
  const file = path.join(out, group, 'tsconfig.json')
  fs.writeFileSync(file, JSON.stringify(config, null, 2))
  return file
}

function runTsc(tsconfig) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [tsc, '-p', tsconfig, '--pretty', 'false'], { cwd: root })
    let output = ''
    child.stdout.on('data', (d) => (output += d))
    child.stderr.on('data', (d) => (output += d))
    child.on('close', (code) => resolve({ code, output }))
  })
}

const runs = []
if (groups.complete.length > 0) {
  runs.push(['complete', writeTsconfig('complete', groups.complete.map((b) => b.name))])
}
if (groups.fragments.length > 0) {
  fs.copyFileSync(path.join(root, 'scripts/snippets/globals.d.ts'), path.join(out, 'fragments/globals.d.ts'))
  runs.push(['fragments', writeTsconfig('fragments', ['globals.d.ts', ...groups.fragments.map((b) => b.name)])])
}
const results = await Promise.all(runs.map(async ([group, config]) => ({ group, ...(await runTsc(config)) })))

// tsc's lines: `path(line,col): error TSnnnn: message`, followed by indented continuation lines.
const failures = new Map() // "file:line" of the block -> messages
const other = []
for (const { group, code, output } of results) {
  let last
  for (const line of output.split('\n')) {
    const m = /^(.*?)\((\d+),(\d+)\): (error .*)$/.exec(line)
    if (!m) {
      if (line.trim() !== '' && last) last.push(line)
      else if (line.trim() !== '') other.push(line)
      continue
    }
    const block = groups[group].find((b) => path.basename(m[1]) === b.name && path.resolve(path.join(out, group), m[1]).startsWith(out))
    if (!block) {
      last = [`${m[1]}(${m[2]},${m[3]}): ${m[4]}`]
      other.push(last)
      continue
    }
    const snippetLine = Number(m[2]) - block.offset
    const key = `${block.file}:${block.line}`
    if (!failures.has(key)) failures.set(key, [])
    last = [`  ${block.file}:${block.line + snippetLine} (block line ${snippetLine}): ${m[4]}`]
    failures.get(key).push(last)
  }
  if (code !== 0 && failures.size === 0 && other.length === 0) other.push(`tsc (${group}) exited with ${code}`)
}

if (given.length > 0) fs.rmSync(out, { recursive: true, force: true })
const checked = groups.complete.length + groups.fragments.length
console.log(
  `check:docs: ${checked} TypeScript blocks checked (${groups.complete.length} complete, ${groups.fragments.length} fragments), ${skipped.length} skipped`,
)
for (const block of skipped) console.log(`  skipped ${block.file}:${block.line}: ${block.directive.skip}`)
if (failures.size > 0 || other.length > 0) {
  console.error(`check:docs: ${failures.size} block(s) fail to typecheck under strict:`)
  const byPlace = ([a], [b]) => a.localeCompare(b, 'en', { numeric: true })
  for (const [key, messages] of [...failures].sort(byPlace)) {
    console.error(key)
    for (const message of messages) console.error(message.join('\n'))
  }
  for (const line of other) console.error(Array.isArray(line) ? line.join('\n') : line)
  process.exit(1)
}
console.log('check:docs: every checked block typechecks')
