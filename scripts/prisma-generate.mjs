#!/usr/bin/env node
/**
 * Generates the Prisma client the ORM matrix uses (tests/setup/prisma/schema.prisma →
 * tests/setup/prisma/generated/, not committed), offline and only when it is missing or stale.
 *
 * Prisma 7's `prisma-client` generator writes TypeScript and its client compiles queries in wasm:
 * `prisma generate` needs no engine, but the CLI still looks for its schema-engine binary and,
 * where none is installed, downloads one. PRISMA_SCHEMA_ENGINE_BINARY pointing at any existing file
 * stops that (generate never runs it); the Node binary is a file every machine has.
 *
 * Called by the test global setup (tests/setup/global.ts), so `npm test` and `npx vitest run ...`
 * on a fresh clone work, and by `npm run typecheck` (pretypecheck), which reads the generated types.
 * Usage: node scripts/prisma-generate.mjs [--force]
 */
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const schema = path.join(root, 'tests/setup/prisma/schema.prisma')
const output = path.join(root, 'tests/setup/prisma/generated')
const stamp = path.join(output, '.stamp')

/** Generates unless the output was made from this schema by this Prisma version. Returns whether it ran. */
export function generatePrismaClient({ force = false } = {}) {
  const require = createRequire(path.join(root, 'package.json'))
  const cli = require.resolve('prisma/build/index.js')
  const version = JSON.parse(fs.readFileSync(require.resolve('prisma/package.json'), 'utf8')).version
  const digest = createHash('sha256').update(version).update('\0').update(fs.readFileSync(schema)).digest('hex')
  if (!force && readStamp() === digest && fs.existsSync(path.join(output, 'client.ts'))) return false
  const result = spawnSync(process.execPath, [cli, 'generate', '--schema', schema], {
    cwd: root,
    encoding: 'utf8',
    env: {
      ...process.env,
      PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY || process.execPath,
      CHECKPOINT_DISABLE: '1', // no version check or telemetry request
      PRISMA_HIDE_UPDATE_MESSAGE: '1',
    },
  })
  if (result.status !== 0) {
    throw new Error(`prisma generate failed (${result.status ?? result.signal}):\n${result.stdout}\n${result.stderr}`)
  }
  fs.writeFileSync(stamp, digest)
  return true
}

function readStamp() {
  try {
    return fs.readFileSync(stamp, 'utf8')
  } catch {
    return undefined
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const ran = generatePrismaClient({ force: process.argv.includes('--force') })
  console.log(ran ? `prisma client generated in ${path.relative(root, output)}` : 'prisma client up to date')
}
