/**
 * The ORM matrix (issue 13, item 4): one set of tests that every ORM test file
 * (tests/integration/orm-<name>.test.ts) runs against its ORM, built over `db.pool` only, under
 * `db.runWithTenant`, on two targets:
 *
 * - direct: a pg.Pool of the login role on the server;
 * - through PgBouncer in transaction mode with a server pool of 2 (PGBOUNCER_SMALL_POOL_SIZE), so
 *   that the pool's clients share backends: nothing a tenant leaves at session level may survive
 *   there. Skipped where PgBouncer is not installed; CI requires it (PG_TENANT_REQUIRE_PGBOUNCER).
 *
 * For each: reads and writes scoped to the tenant, a transaction that commits, one that throws and
 * leaves no row, transactions with an isolation level (the server must report both the level and
 * the tenant inside), fail-closed without a tenant, a policy refusal (WITH CHECK, 42501) and how the
 * ORM wraps it, 20 tenants at once with no row read or written under another tenant, and every
 * server connection clean afterwards.
 */
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest'
import { createTenantPool, isRlsViolation, type TenantPool } from './pg-tenant.js'
import { createTestDatabase, STATE_SQL, type State, type TestDatabase } from './fixtures.js'
import { PGBOUNCER_SMALL_POOL_SIZE } from './pgbouncer.js'

/** An `events` row as the ORM reads it. */
export interface EventRow {
  orgId: string
  payload: string | null
}

/** What the server reports inside a statement: its transaction's isolation and the tenant setting. */
export interface ServerState {
  isolation: string
  tenant: string
}

/** The statement each ORM sends for {@link OrmQueries.state}. */
export const SERVER_STATE_SQL = `select current_setting('transaction_isolation') as isolation,
  coalesce(current_setting('app.tenant_id', true), '') as tenant`

/** What the matrix does with an ORM, in the ORM's own API, outside or inside its transaction. */
export interface OrmQueries {
  /** Inserts an `events` row, leaving `org_id` to its default (the tenant setting). */
  insert(kind: string, payload: string): Promise<unknown>
  /** Inserts an `events` row with this `org_id`. */
  insertFor(orgId: string, kind: string, payload: string): Promise<unknown>
  /** The `events` rows of `kind` the tenant can see. */
  list(kind: string): Promise<EventRow[]>
  /** {@link SERVER_STATE_SQL}, through the ORM's raw SQL. */
  state(): Promise<ServerState>
}

export type IsolationLevel = 'serializable' | 'repeatable read'

export interface OrmUnderTest extends OrmQueries {
  /** Runs `fn` in one of the ORM's own transactions, with `isolation` when given. */
  transaction<T>(fn: (tx: OrmQueries) => Promise<T>, isolation?: IsolationLevel): Promise<T>
  /** Whatever the ORM needs to shut down. It may end `db.pool` (and so the wrapped pool). */
  close(): Promise<void>
}

export interface OrmCase {
  readonly name: string
  /** Builds the ORM over `db.pool` and nothing else: the recipe in docs/orms.md. */
  open(db: TenantPool<pg.Pool>, t: TestDatabase): Promise<OrmUnderTest>
  /**
   * Where the ORM's error for a policy refusal keeps what PostgreSQL said (`code`, `routine`,
   * `message`): the pg `DatabaseError` itself or the ORM's copy of its fields.
   */
  pgErrorOf(err: unknown): { code?: unknown; routine?: unknown; message?: unknown } | undefined
  /** Whether PostgreSQL's `routine` survives the ORM's wrapping (Prisma's adapter drops it). */
  readonly keepsRoutine: boolean
}

const TENANTS = Array.from({ length: 20 }, (_, i) => `org_m${String(i).padStart(2, '0')}`)
const OPERATIONS_PER_TENANT = 15 // 20 tenants × 15 = 300 operations

/** The keys along which ORMs hang the error they wrap (see docs/orms.md). */
const WRAPPER_KEYS = ['cause', 'driverError', 'originalError', 'meta', 'driverAdapterError'] as const

/** Every `code` found on `err` and the errors it wraps. */
export function codesInChain(err: unknown): unknown[] {
  const codes: unknown[] = []
  const seen = new Set<unknown>()
  const walk = (value: unknown, depth: number) => {
    if (typeof value !== 'object' || value === null || seen.has(value) || depth > 6) return
    seen.add(value)
    const { code } = value as { code?: unknown }
    if (code !== undefined) codes.push(code)
    for (const key of WRAPPER_KEYS) walk((value as Record<string, unknown>)[key], depth + 1)
  }
  walk(err, 0)
  return codes
}

/** One line per error, for assertion messages. */
function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  return `${err.constructor.name}${(err as { code?: unknown }).code ? ` ${String((err as { code?: unknown }).code)}` : ''}: ${err.message.split('\n').filter(Boolean).slice(-1)[0] ?? ''}`
}

/** Defines the whole matrix for one ORM. Call it at the top level of a test file. */
export function describeOrmMatrix(orm: OrmCase): void {
  let t: TestDatabase
  beforeAll(async () => {
    t = await createTestDatabase()
  })
  afterAll(() => t?.drop())

  describe.each([
    { target: 'direct', key: 'direct', max: 4, url: () => t.appUrl, available: true },
    {
      target: `through PgBouncer (transaction pooling, server pool of ${PGBOUNCER_SMALL_POOL_SIZE})`,
      key: 'bouncer',
      max: 8, // more clients than server connections: they share backends
      url: () => t.bouncerSmallUrl!,
      available: inject('pgBouncerSmallPort') !== 0,
    },
  ])(`${orm.name} $target`, ({ key, max, url, available }) => {
    if (!available) return it.skip('needs PgBouncer (installed by .ci/run)')

    interface Instance {
      pool: pg.Pool
      db: TenantPool<pg.Pool>
      subject: OrmUnderTest
    }
    const instances: Instance[] = []
    /** A pg pool, pg-tenant over it and the ORM over `db.pool`; closed after the last test. */
    const open = async (): Promise<Instance> => {
      const pool = t.pool({ connectionString: url(), max })
      const db = createTenantPool(pool)
      const instance = { pool, db, subject: await orm.open(db, t) }
      instances.push(instance)
      return instance
    }
    // Shared by the tests below, except the concurrent one, which gets one of its own: its verdict
    // must not depend on what an earlier test left (a pool that refuses everything after a
    // SessionPoolingError never runs a cross-tenant operation).
    let db: TenantPool<pg.Pool>
    let subject: OrmUnderTest
    const kind = (name: string) => `${key}-${name}`
    const adminRows = async (k: string) =>
      (await t.admin<{ org_id: string; payload: string | null }>(
        'select org_id, payload from events where kind = $1 order by id',
        [k],
      )).rows
    const adminCount = async (k: string) => (await adminRows(k)).length

    beforeAll(async () => {
      ;({ db, subject } = await open())
    })
    afterAll(async () => {
      await Promise.allSettled(instances.map((i) => i.subject.close()))
    })

    if (key === 'bouncer') {
      it('(precondition) one client’s consecutive statements change backends', async () => {
        // PgBouncer opens its min_pool_size connections in the background: wait for them.
        const pids = new Set<number>()
        const client = new pg.Client({ connectionString: url() })
        await client.connect()
        try {
          for (let i = 0; i < 100 && pids.size < PGBOUNCER_SMALL_POOL_SIZE; i++) {
            pids.add((await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid)
            if (pids.size < PGBOUNCER_SMALL_POOL_SIZE) await new Promise((r) => setTimeout(r, 50))
          }
          const next = [] as number[]
          for (let i = 0; i < 4; i++) next.push((await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid)
          expect(pids.size).toBe(PGBOUNCER_SMALL_POOL_SIZE)
          // Round robin: no two consecutive statements on the same backend.
          expect(next.every((pid, i) => i === 0 || pid !== next[i - 1])).toBe(true)
        } finally {
          await client.end()
        }
      })
    }

    it('reads and writes as the tenant; other tenants’ rows are invisible', async () => {
      const k = kind('rw')
      await db.runWithTenant('org_a', async () => {
        await subject.insert(k, 'org_a')
        await subject.insert(k, 'org_a')
      })
      await db.runWithTenant('org_b', () => subject.insert(k, 'org_b'))
      const seenByA = await db.runWithTenant('org_a', () => subject.list(k))
      const seenByB = await db.runWithTenant('org_b', () => subject.list(k))
      const seenByC = await db.runWithTenant('org_c', () => subject.list(k))
      expect(seenByA).toEqual([
        { orgId: 'org_a', payload: 'org_a' },
        { orgId: 'org_a', payload: 'org_a' },
      ])
      expect(seenByB).toEqual([{ orgId: 'org_b', payload: 'org_b' }])
      expect(seenByC).toEqual([])
      // What the database holds, read as superuser: org_id came from the tenant setting.
      expect(await adminRows(k)).toEqual([
        { org_id: 'org_a', payload: 'org_a' },
        { org_id: 'org_a', payload: 'org_a' },
        { org_id: 'org_b', payload: 'org_b' },
      ])
    })

    it('a lone statement runs with the tenant set and autocommits', async () => {
      const state = await db.runWithTenant('org_s', () => subject.state())
      expect(state).toEqual({ isolation: 'read committed', tenant: 'org_s' })
    })

    it('a transaction commits its writes as the tenant', async () => {
      const k = kind('commit')
      const inside = await db.runWithTenant('org_t', () =>
        subject.transaction(async (tx) => {
          await tx.insert(k, 'org_t')
          await tx.insert(k, 'org_t')
          return { rows: await tx.list(k), state: await tx.state() }
        }),
      )
      expect(inside).toEqual({
        rows: [
          { orgId: 'org_t', payload: 'org_t' },
          { orgId: 'org_t', payload: 'org_t' },
        ],
        state: { isolation: 'read committed', tenant: 'org_t' },
      })
      expect(await adminRows(k)).toEqual([
        { org_id: 'org_t', payload: 'org_t' },
        { org_id: 'org_t', payload: 'org_t' },
      ])
      expect(await db.runWithTenant('org_u', () => subject.list(k))).toEqual([])
    })

    it('a transaction that throws leaves no row behind', async () => {
      const k = kind('rollback')
      let seenInside: EventRow[] | undefined
      const err = await db
        .runWithTenant('org_r', () =>
          subject.transaction(async (tx) => {
            await tx.insert(k, 'org_r')
            seenInside = await tx.list(k)
            throw new Error('undo')
          }),
        )
        .catch((e: unknown) => e)
      expect(err).toBeInstanceOf(Error)
      expect((err as Error).message).toBe('undo')
      expect(seenInside).toEqual([{ orgId: 'org_r', payload: 'org_r' }])
      expect(await adminCount(k)).toBe(0)
      // The tenant's next statement works: nothing of the failed transaction is left in the way.
      expect(await db.runWithTenant('org_r', () => subject.list(k))).toEqual([])
    })

    it.each(['serializable', 'repeatable read'] as const)(
      'a transaction at isolation level %s runs at that level, as the tenant',
      async (level) => {
        const k = kind(`iso-${level.replace(' ', '-')}`)
        const inside = await db.runWithTenant('org_i', () =>
          subject.transaction(async (tx) => {
            const state = await tx.state()
            await tx.insert(k, 'org_i')
            return { state, rows: await tx.list(k) }
          }, level),
        )
        expect(inside).toEqual({
          state: { isolation: level, tenant: 'org_i' },
          rows: [{ orgId: 'org_i', payload: 'org_i' }],
        })
        expect(await adminRows(k)).toEqual([{ org_id: 'org_i', payload: 'org_i' }])
      },
    )

    it('fails closed with no tenant bound: TenantRequiredError, nothing written', async () => {
      const k = kind('no-tenant')
      const readErr = await subject.list(k).catch((e: unknown) => e)
      const writeErr = await subject.insert(k, 'nobody').catch((e: unknown) => e)
      expect(readErr).toBeInstanceOf(Error)
      expect(writeErr).toBeInstanceOf(Error)
      // Wrapped or not, the ORM's error still says why (see docs/orms.md for where).
      expect(codesInChain(readErr)).toContain('TENANT_REQUIRED')
      expect(codesInChain(writeErr)).toContain('TENANT_REQUIRED')
      expect(await adminCount(k)).toBe(0)
    })

    describe('a row for another tenant (WITH CHECK, SQLSTATE 42501)', () => {
      let refusal: unknown
      let refusalInTransaction: unknown
      beforeAll(async () => {
        refusal = await db
          .runWithTenant('org_p', () => subject.insertFor('org_q', kind('forged'), 'forged'))
          .then(() => new Error('the forged insert succeeded'), (e: unknown) => e)
        refusalInTransaction = await db
          .runWithTenant('org_p', () =>
            subject.transaction((tx) => tx.insertFor('org_q', kind('forged-tx'), 'forged')),
          )
          .then(() => new Error('the forged insert succeeded'), (e: unknown) => e)
      })

      it('is refused and writes nothing; the ORM’s error carries PostgreSQL’s', async () => {
        expect(await adminCount(kind('forged'))).toBe(0)
        expect(await adminCount(kind('forged-tx'))).toBe(0)
        for (const err of [refusal, refusalInTransaction]) {
          const pgError = orm.pgErrorOf(err)
          expect(pgError, describeError(err)).toMatchObject({
            code: '42501',
            message: expect.stringMatching(/new row violates row-level security policy/),
          })
          if (orm.keepsRoutine) expect(pgError?.routine).toBe('ExecWithCheckOptions')
        }
      })

      it('isRlsViolation(err) recognises the ORM’s error', () => {
        expect(isRlsViolation(refusal), describeError(refusal)).toBe(true)
        expect(isRlsViolation(refusalInTransaction), describeError(refusalInTransaction)).toBe(true)
      })
    })

    it(
      `keeps ${TENANTS.length} tenants apart over ${TENANTS.length * OPERATIONS_PER_TENANT} concurrent operations`,
      async () => {
        const k = kind('load')
        const { db, subject } = await open()
        let foreignRead = 0
        let wrongTenant = 0
        let seen = 0
        let writes = 0
        const errors: string[] = []
        const readOwn = (tenant: string, rows: EventRow[]) => {
          seen += rows.length
          foreignRead += rows.filter((r) => r.orgId !== tenant || r.payload !== tenant).length
        }
        const operation = async (tenant: string, n: number) => {
          switch (n % 3) {
            case 0:
              await subject.insert(k, tenant)
              writes += 1
              return
            case 1:
              readOwn(tenant, await subject.list(k))
              return
            default:
              await subject.transaction(async (tx) => {
                if ((await tx.state()).tenant !== tenant) wrongTenant += 1
                await tx.insert(k, tenant)
                readOwn(tenant, await tx.list(k))
              })
              writes += 1
          }
        }
        await Promise.all(
          TENANTS.map(async (tenant, i) => {
            for (let n = 0; n < OPERATIONS_PER_TENANT; n++) {
              await db.runWithTenant(tenant, () => operation(tenant, n + i)).catch((e: unknown) => {
                errors.push(describeError(e))
              })
            }
          }),
        )
        const stored = await adminRows(k)
        const foreignWritten = stored.filter((r) => r.org_id !== r.payload).length
        expect({
          errors: errors.length,
          firstErrors: [...new Set(errors)].slice(0, 3),
          foreignRead,
          wrongTenant,
          foreignWritten,
          stored: stored.length,
        }).toEqual({
          errors: 0,
          firstErrors: [],
          foreignRead: 0,
          wrongTenant: 0,
          foreignWritten: 0,
          stored: writes,
        })
        expect(writes).toBe((TENANTS.length * OPERATIONS_PER_TENANT * 2) / 3)
        expect(seen).toBeGreaterThan(TENANTS.length * OPERATIONS_PER_TENANT)
      },
      120_000,
    )

    it('leaves every server connection clean', async () => {
      if (key === 'direct') for (const { pool } of instances) await expectPoolClean(pool)
      else await expectBouncerServersClean(url(), PGBOUNCER_SMALL_POOL_SIZE)
    })
  })
}

/** Directly: every client of the wrapped pg pool, checked out at once, reads a clean state. */
export async function expectPoolClean(pool: pg.Pool): Promise<void> {
  // An ORM's release() does not wait for pg-tenant to put the client back (the reset and the
  // release canary run after it), so give that a moment. A client pg-tenant never gave back fails
  // here rather than hanging the checkout below.
  await vi.waitFor(
    () =>
      expect({ total: pool.totalCount > 0, idle: pool.idleCount, waiting: pool.waitingCount }).toEqual({
        total: true,
        idle: pool.totalCount,
        waiting: 0,
      }),
    { timeout: 5_000, interval: 20 },
  )
  const clients = await Promise.all(Array.from({ length: pool.totalCount }, () => pool.connect()))
  try {
    const states = await Promise.all(clients.map(async (client) => readState(client)))
    expect(new Set(states.map((s) => s.pid)).size).toBe(clients.length)
    expect(states).toEqual(states.map(({ pid }) => ({ pid, sameUser: true, tenant: '', transaction: 'I' })))
  } finally {
    for (const client of clients) client.release()
  }
}

/**
 * Through PgBouncer: as many plain clients as the server pool has connections, each in a
 * transaction of its own while all stay open, so each holds a distinct server connection. A
 * server connection left inside a transaction would answer BEGIN with a warning.
 */
export async function expectBouncerServersClean(url: string, servers: number): Promise<void> {
  const clients = Array.from({ length: servers }, () => new pg.Client({ connectionString: url, query_timeout: 10_000 }))
  const warnings: string[] = []
  try {
    for (const client of clients) {
      client.on('notice', (notice) => warnings.push(String(notice.message)))
      client.on('error', () => undefined)
      await client.connect()
    }
    const states: Array<Omit<CleanState, 'transaction'>> = []
    for (const client of clients) {
      await client.query('begin')
      const { transaction: _, ...state } = await readState(client)
      states.push(state)
    }
    expect(new Set(states.map((s) => s.pid)).size).toBe(servers)
    expect(states).toEqual(states.map(({ pid }) => ({ pid, sameUser: true, tenant: '' })))
    expect(warnings).toEqual([])
  } finally {
    await Promise.allSettled(clients.map(async (client) => {
      await client.query('commit').catch(() => undefined)
      await client.end()
    }))
  }
}

interface CleanState {
  pid: number
  sameUser: boolean
  tenant: string
  /** pg's view of the ReadyForQuery after the read: 'I' idle, 'T' in a transaction, 'E' failed. */
  transaction: string | null
}

async function readState(client: pg.PoolClient | pg.Client): Promise<CleanState> {
  // pg >= 8.21 keeps the status of the last ReadyForQuery (`getTransactionStatus()`); older pg, down
  // to the floor of peerDependencies.pg, does not: there it is read from the ReadyForQuery that
  // answers the read, on the client's connection.
  const own = (client as unknown as { getTransactionStatus?: () => string | null }).getTransactionStatus
  let answered: string | null = null
  const connection = (client as unknown as { connection: { once(e: string, l: (m?: { status?: string }) => void): void } })
    .connection
  if (typeof own !== 'function') connection.once('readyForQuery', (msg) => (answered = msg?.status ?? null))
  const { rows } = await client.query<State>(STATE_SQL)
  const row = rows[0]!
  return {
    pid: row.pid,
    sameUser: row.current_user === row.session_user,
    tenant: row.tenant,
    transaction: typeof own === 'function' ? own.call(client) : answered,
  }
}
