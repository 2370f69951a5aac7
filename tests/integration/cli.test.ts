/**
 * The built command line (`node dist/cli.js`), run as a child process against a real server:
 * exit codes 0, 1 and 2, JSON output, help, bad usage and an unreachable database.
 *
 * `npm test` builds first; when dist/cli.js is missing or older than the sources (a bare
 * `npx vitest run`), it is rebuilt here.
 */
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tenantPolicySql, type Finding } from '../../src/index.js'
import { freePort } from '../setup/embedded.js'
import { ensureBuilt, root } from '../setup/built.js'
import { createTestDatabase, type TestDatabase } from '../setup/fixtures.js'

const cli = path.join(root, 'dist/cli.js')

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

function run(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env }
  if (env.DATABASE_URL === undefined) delete childEnv.DATABASE_URL // never the runner's superuser
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env: childEnv, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null
      resolve({ code, stdout, stderr })
    })
  })
}

let t: TestDatabase
const SOUND = ['--column', 'org_id', '--column', 'salesperson', '--schema', 'public']

beforeAll(async () => {
  ensureBuilt(['cli.js'])
  t = await createTestDatabase()
  await t.admin(`create schema cli_broken authorization ${t.ownerRole};
    grant usage on schema cli_broken to ${t.appRole};
    create schema cli_slow authorization ${t.ownerRole};
    grant usage on schema cli_slow to ${t.appRole}`)
  await t.admin(`set role ${t.ownerRole};
    create table cli_broken.no_rls (id int, org_id text);
    grant select on cli_broken.no_rls to ${t.appRole};
    create table cli_slow.items (id int, org_id text);
    alter table cli_slow.items enable row level security;
    alter table cli_slow.items force row level security;
    create policy p on cli_slow.items
      using (org_id = nullif(current_setting('app.tenant_id', true), ''))
      with check (org_id = nullif(current_setting('app.tenant_id', true), ''));
    grant select on cli_slow.items to ${t.appRole};
    reset role`)
})
afterAll(() => t.drop())

describe('pg-tenant doctor', () => {
  it('exits 0 and says so when nothing is wrong', async () => {
    const { code, stdout, stderr } = await run(['doctor', '--url', t.appUrl, ...SOUND])
    expect(stderr).toBe('')
    expect(stdout).toMatch(/^No findings/)
    expect(code).toBe(0)
  })

  it('exits 1 on an error finding, with a table of object, severity, message and fix', async () => {
    const { code, stdout } = await run(['doctor', '--url', t.appUrl, '--column', 'org_id', '--schema', 'cli_broken'])
    expect(code).toBe(1)
    expect(stdout).toMatch(/^SEVERITY\s+OBJECT\s+MESSAGE AND FIX$/m)
    expect(stdout).toMatch(/^error\s+table cli_broken\.no_rls\s+RLS_DISABLED: /m)
    expect(stdout).toContain('ALTER TABLE "cli_broken"."no_rls" ENABLE ROW LEVEL SECURITY;')
    expect(stdout).toMatch(/1 error, 0 warnings\.\n$/)
  })

  it('exits 0 when there are warnings only', async () => {
    const { code, stdout } = await run(['doctor', '--url', t.appUrl, '--column', 'org_id', '--schema', 'cli_slow'])
    expect(stdout).toContain('POLICY_SETTING_NO_INITPLAN')
    expect(stdout).toMatch(/0 errors, 1 warning\.\n$/)
    expect(code).toBe(0)
  })

  it('prints the findings as JSON with --json', async () => {
    const broken = await run(['doctor', '--json', '--url', t.appUrl, '--column', 'org_id', '--schema', 'cli_broken'])
    expect(broken.code).toBe(1)
    const findings = JSON.parse(broken.stdout) as Finding[]
    expect(findings.map((f) => [f.severity, f.code, f.object])).toEqual([
      ['error', 'RLS_DISABLED', 'table cli_broken.no_rls'],
    ])
    expect(Object.keys(findings[0]!).sort()).toEqual(['code', 'fix', 'message', 'object', 'severity'])
    const sound = await run(['doctor', '--json', '--url', t.appUrl, ...SOUND])
    expect(sound.code).toBe(0)
    expect(JSON.parse(sound.stdout)).toEqual([])
  })

  it('uses DATABASE_URL when --url is absent', async () => {
    const { code, stdout } = await run(['doctor', ...SOUND, '--json'], { DATABASE_URL: t.appUrl })
    expect(code).toBe(0)
    expect(JSON.parse(stdout)).toEqual([])
  })

  it('passes --allow-role (names and /regexps/), --scope, --pgbouncer and --login-role through', async () => {
    const { code, stdout } = await run([
      'doctor', '--json', '--url', t.adminUrl, ...SOUND,
      '--login-role', t.appRole,
      '--allow-role', t.roles.sales[0]!,
      '--allow-role', `/^${t.database}_sales_[0-9x]$/`,
      '--scope', 'session', '--pgbouncer', 'transaction',
    ])
    const findings = JSON.parse(stdout) as Finding[]
    expect(findings.map((f) => f.code)).toEqual(['SESSION_SCOPE_TRANSACTION_POOLING', 'ALLOWED_ROLE_NOT_GRANTED'])
    expect(findings[1]!.message).toContain(t.roles.notGranted)
    expect(code).toBe(1)
  })

  it('exits 2 with a clear message when the database is unreachable, without printing the password', async () => {
    const port = await freePort() // free a moment ago, and nothing listens on it
    const { code, stdout, stderr } = await run([
      'doctor', '--url', `postgres://someone:s3cret@127.0.0.1:${port}/db`, '--column', 'org_id',
    ])
    expect(code).toBe(2)
    expect(stdout).toBe('')
    expect(stderr).toBe(`pg-tenant: cannot connect to the database at 127.0.0.1:${port}/db: connect ECONNREFUSED 127.0.0.1:${port}\n`)
    expect(stderr).not.toContain('s3cret')
  })

  it('exits 2 on a failed login, naming the cause, with no password and no stack trace', async () => {
    const url = new URL(t.appUrl)
    url.password = 'wr0ng-s3cret'
    const { code, stdout, stderr } = await run(['doctor', '--url', url.toString(), ...SOUND])
    expect(code).toBe(2)
    expect(stdout).toBe('')
    expect(stderr).toMatch(/^pg-tenant: cannot connect to the database at [^\n]+: password authentication failed for user "[^"]+"\n$/)
    expect(stderr).not.toContain('wr0ng-s3cret')
  })

  it.each([
    [['--url', 'not-a-url'], '--url is not a PostgreSQL connection URL: it does not start with postgres:// or postgresql://'],
    [['--url', 'postgres://x:s3cret@:badport/db'], '--url is not a PostgreSQL connection URL: its port is not a number from 1 to 65535'],
    [['--url', 'postgres://x:s3cret@host:99999/db'], '--url is not a PostgreSQL connection URL: its port is not a number from 1 to 65535'],
    [['--url', 'http://x:s3cret@host/db'], '--url is not a PostgreSQL connection URL: its scheme is "http:", not postgres: or postgresql:'],
    [['--url', 'x:s3cret@host/db'], '--url is not a PostgreSQL connection URL: it does not start with postgres:// or postgresql://'],
    [['--url', 'postgres://x:s3cr#et@host/db'], '--url is not a PostgreSQL connection URL'],
    [['--url', ''], '--url is not a PostgreSQL connection URL: it is empty'],
  ])('a malformed URL %j is a usage error: exit 2, the problem named, nothing tried', async (args, text) => {
    const { code, stdout, stderr } = await run(['doctor', ...args, '--column', 'org_id'])
    expect(code).toBe(2)
    expect(stdout).toBe('')
    expect(stderr).toContain(`pg-tenant: ${text}`)
    expect(stderr).toContain("Run 'pg-tenant doctor --help' for usage.")
    expect(stderr).not.toContain('s3cr')
    expect(stderr).not.toContain('cannot connect')
  })

  it('names DATABASE_URL when that is the malformed one', async () => {
    const { code, stderr } = await run(['doctor', '--column', 'org_id'], { DATABASE_URL: 'mysql://u:s3cret@h/db' })
    expect(code).toBe(2)
    expect(stderr).toContain('DATABASE_URL is not a PostgreSQL connection URL: its scheme is "mysql:"')
    expect(stderr).not.toContain('s3cret')
  })

  it('accepts the Unix-socket forms pg reads (and then reports what the connection did)', async () => {
    for (const url of ['postgres:///db?host=/nonexistent-dir', 'socket:/nonexistent-dir?db=db']) {
      const { code, stderr } = await run(['doctor', '--url', url, '--column', 'org_id'])
      expect(code).toBe(2)
      expect(stderr).toContain('pg-tenant: cannot connect to the database at /nonexistent-dir')
    }
  })
})

describe('a selection that checks nothing', () => {
  it('exits 1 naming the column no table has, instead of "No findings"', async () => {
    const { code, stdout, stderr } = await run(['doctor', '--url', t.appUrl, '--column', 'org_idd', '--schema', 'public'])
    expect(stderr).toBe('')
    expect(stdout).not.toMatch(/No findings/)
    expect(stdout).toMatch(/^error\s+tenant tables\s+NOTHING_CHECKED: no table in schema "public" has a column/m)
    expect(stdout).toContain('"org_idd"')
    expect(code).toBe(1)
  })

  it('exits 1 for a schema that does not exist, in JSON too', async () => {
    const { code, stdout } = await run(['doctor', '--json', '--url', t.appUrl, ...SOUND, '--schema', 'pubilc'])
    expect(code).toBe(1)
    const findings = JSON.parse(stdout) as Finding[]
    expect(findings.map((f) => [f.severity, f.code, f.object])).toEqual([['error', 'NOTHING_CHECKED', 'schema pubilc']])
  })

  it('exits 2 when no database is given', async () => {
    const { code, stderr } = await run(['doctor', '--column', 'org_id'])
    expect(code).toBe(2)
    expect(stderr).toContain('pass --url')
  })

  it('exits 2 for an unknown login role', async () => {
    const { code, stderr } = await run(['doctor', '--url', t.appUrl, '--column', 'org_id', '--login-role', 'nobody_here'])
    expect(code).toBe(2)
    expect(stderr).toContain('does not exist')
  })
})

describe('pg-tenant policy', () => {
  it('prints the same SQL as tenantPolicySql', async () => {
    const { code, stdout } = await run(['policy', '--table', 'events', '--column', 'org_id', '--type', 'uuid'])
    expect(code).toBe(0)
    expect(stdout).toBe(`${tenantPolicySql({ table: 'events', column: 'org_id', type: 'uuid' })}\n`)
  })

  it('prints the role-per-user policy and the undo SQL', async () => {
    const role = await run(['policy', '--table', 'clients', '--column', 'rep', '--current-user', '--schema', 'crm'])
    expect(role.code).toBe(0)
    expect(role.stdout).toContain('USING ("rep" = current_user)')
    const undo = await run(['policy', '--table', 'events', '--schema', 'app', '--undo'])
    expect(undo.code).toBe(0)
    expect(undo.stdout).toContain('DROP POLICY IF EXISTS "tenant_isolation" ON "app"."events";')
  })

  it('exits 2 for invalid names and types', async () => {
    const empty = await run(['policy', '--table', '', '--column', 'c'])
    expect(empty.code).toBe(2)
    expect(empty.stderr).toContain('invalid table')
    const type = await run(['policy', '--table', 't', '--column', 'c', '--type', 'money'])
    expect(type.code).toBe(2)
    expect(type.stderr).toContain('--type must be')
    const setting = await run(['policy', '--table', 't', '--column', 'c', '--setting', "x'y"])
    expect(setting.code).toBe(2)
    expect(setting.stderr).toContain('invalid setting name')
  })
})

describe('usage', () => {
  it.each([
    [['--help'], 'Usage: pg-tenant <command>'],
    [['doctor', '--help'], 'Usage: pg-tenant doctor'],
    [['policy', '-h'], 'Usage: pg-tenant policy'],
  ])('%j prints help and exits 0', async (args, text) => {
    const { code, stdout } = await run(args)
    expect(code).toBe(0)
    expect(stdout).toContain(text)
  })

  it.each([
    [['doctor', '--url', 'postgres://x', '--colum', 'org_id'], "Unknown option '--colum'"],
    [['policy', '--table'], "Option '--table <value>' argument missing"],
    [['policy', '--column', 'c'], 'missing --table'],
    [['doctor', '--url'], "Option '--url <value>' argument missing"],
    [['policy', '--table', 't', '--column', 'c', 'stray'], 'unexpected argument "stray"'],
    [['frobnicate'], 'unknown command "frobnicate"'],
    [[], 'Usage: pg-tenant <command>'],
    [['doctor', '--column'], "Option '--column <value>' argument missing"],
    [['doctor', '--json=yes', '--column', 'c'], "Option '--json' does not take an argument"],
    [['doctor', '--column', 'c', '--scope', 'both'], '--scope must be transaction or session'],
    [['--url', 'postgres://h/db', 'doctor'], 'unknown option "--url" (options go after the command)'],
  ])('%j exits 2 with a message on stderr', async (args, text) => {
    const { code, stdout, stderr } = await run(args)
    expect(code).toBe(2)
    expect(stdout).toBe('')
    expect(stderr).toContain(text)
    expect(stderr).not.toMatch(/^\s+at /m) // no stack trace
    expect(stderr.trim().split('\n').length).toBeLessThanOrEqual(args.length === 0 ? 20 : 2)
  })

  it('prints the version', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }
    expect((await run(['--version'])).stdout).toBe(`${pkg.version}\n`)
  })
})
