/**
 * The README's quick starts, run as a newcomer runs them: every block marked
 * `<!-- snippet: complete, run -->` is written to a file, run with tsx against a fresh database of
 * the test server (DATABASE_URL: a superuser, as the README says), and must exit 0 and print
 * exactly the ```text block that follows it in the README. `pg-tenant` resolves to the built
 * package (dist/) through package.json "exports", as in an application: `npm test` builds first.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'
import { expect, inject, it } from 'vitest'
import { documentationBlocks, root } from '../../scripts/snippets.mjs'

const runnable = documentationBlocks().filter((b) => b.directive.run)

it('finds the two quick starts (a tenant id in a setting, a role per user), and a build to run them on', () => {
  expect(runnable.map((b) => b.file)).toEqual(['README.md', 'README.md'])
  expect(runnable.some((b) => b.code.includes(`current_setting('app.tenant_id'`))).toBe(true)
  expect(runnable.some((b) => b.code.includes('{ role }'))).toBe(true)
  expect(fs.existsSync(path.join(root, 'dist/index.js')), 'run `npm run build` first').toBe(true)
})

/** Runs `text` as SQL with a superuser connection to `url`. */
async function asAdmin(url: string, text: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return await client.query(text)
  } finally {
    await client.end()
  }
}

for (const block of runnable) {
  it(`runs ${block.file}:${block.line} and prints what the README says, tenant by tenant`, { timeout: 60_000 }, async () => {
    const serverUrl = inject('pgAdminUrl')
    const database = `pgt_quickstart_${randomBytes(4).toString('hex')}`
    // The roles the quick start creates (cluster-wide, unlike its tables): dropped afterwards.
    const roles = [...block.code.matchAll(/create role (\w+)/g)].map((m) => m[1]!)
    expect(roles.length).toBeGreaterThan(0)
    await asAdmin(serverUrl, `create database ${database}`)
    const url = new URL(serverUrl)
    url.pathname = `/${database}`
    const dir = path.join(root, '.snippets/run')
    fs.mkdirSync(dir, { recursive: true })
    const file = path.join(dir, `${database}.ts`)
    fs.writeFileSync(file, block.code)
    try {
      const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--import', 'tsx', file], {
        cwd: root,
        env: { ...process.env, DATABASE_URL: url.toString() },
        timeout: 50_000,
      })
      expect(stdout).toBe(block.expected)
      // No warning either (a login role that bypasses RLS would print PG_TENANT_RLS_BYPASSED).
      expect(stderr).toBe('')
      // What it left behind is what it printed: the rows are really in the database, one tenant each.
      const table = block.code.includes('create table events') ? 'events' : 'clients'
      const column = table === 'events' ? 'org_id' : 'salesperson'
      const { rows } = await asAdmin(url.toString(), `select ${column} as tenant, count(*)::int as n from ${table} group by 1 order by 1`)
      expect(rows.length).toBe(2)
    } finally {
      fs.rmSync(file, { force: true })
      await asAdmin(serverUrl, `drop database if exists ${database} with (force)`)
      for (const role of roles) await asAdmin(serverUrl, `drop role if exists ${role}`)
    }
  })
}
