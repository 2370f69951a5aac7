/**
 * A database of its own for each test file, with both seed models' schemas, and a login role that
 * is NOT superuser, NOT BYPASSRLS and owns no table: owners and superusers bypass RLS, and would
 * make every isolation test pass vacuously.
 *
 * Seed 004's model (a tenant id in a setting): `events`, `parents`/`children` (deferred FK).
 * Seed 000's model (a role per user): `clients`, visible to the role whose name is `salesperson`.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import type { PgPoolLike } from '../../src/index.js'
import { TEST_ROLE_PASSWORD } from './pgbouncer.js'

export interface TestDatabase {
  /** Connection string of the unprivileged login role, in the test database. */
  readonly appUrl: string
  /** Superuser connection string, in the test database. */
  readonly adminUrl: string
  readonly database: string
  /** The unprivileged login role. */
  readonly appRole: string
  /** The role that owns every table. */
  readonly ownerRole: string
  /** Seed 000: group role, three salespeople granted to the login role, and one that is not. */
  readonly roles: {
    readonly group: string
    readonly sales: readonly string[]
    readonly notGranted: string
  }
  /** A pg.Pool of the login role. */
  pool(config?: pg.PoolConfig): pg.Pool
  /** A pool of the login role that counts checkouts: proof that some paths never touch it. */
  countingPool(max: number): PgPoolLike & { checkouts: number }
  /** The login role's connection string through PgBouncer (transaction pooling), if running. */
  readonly bouncerUrl: string | undefined
  /**
   * The same through the small-pool PgBouncer (transaction pooling, a server pool of
   * PGBOUNCER_SMALL_POOL_SIZE = 2 per database and user: its clients share backends), if running.
   */
  readonly bouncerSmallUrl: string | undefined
  /** Runs SQL as superuser in the test database. */
  admin<R extends pg.QueryResultRow = any>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>
  /** Drops the database and roles; closes every pool made by `pool()`. */
  drop(): Promise<void>
}

const SCHEMA = (r: TestDatabase['roles'], app: string, owner: string) => `
  create table events (
    id bigserial primary key,
    org_id text not null default current_setting('app.tenant_id', true),
    kind text not null,
    payload text
  );
  alter table events enable row level security;
  alter table events force row level security;
  create policy events_tenant on events
    using (org_id = (select nullif(current_setting('app.tenant_id', true), '')))
    with check (org_id = (select nullif(current_setting('app.tenant_id', true), '')));
  grant select, insert, update, delete on events to ${app}, ${r.group};
  grant usage on sequence events_id_seq to ${app}, ${r.group};

  create table parents (id int primary key);
  create table children (
    id serial primary key,
    org_id text not null default current_setting('app.tenant_id', true),
    parent_id int not null references parents (id) deferrable initially deferred
  );
  alter table children enable row level security;
  alter table children force row level security;
  create policy children_tenant on children
    using (org_id = (select nullif(current_setting('app.tenant_id', true), '')))
    with check (org_id = (select nullif(current_setting('app.tenant_id', true), '')));
  grant select on parents to ${app};
  grant select, insert on children to ${app};
  grant usage on sequence children_id_seq to ${app};

  create table clients (
    id serial primary key,
    name text not null,
    salesperson text not null default current_user
  );
  alter table clients enable row level security;
  alter table clients force row level security;
  create policy clients_salesperson on clients
    using (salesperson = current_user)
    with check (salesperson = current_user);
  grant select, insert, update, delete on clients to ${r.group};
  grant usage on sequence clients_id_seq to ${r.group};
`

function quote(ident: string): string {
  return `"${ident.replaceAll('"', '""')}"`
}

/**
 * Creates the database, its roles and schema on the server at `serverAdminUrl` (a superuser URL).
 * `bouncerPort`, `bouncerSmallPort`: PgBouncers in front of that server (server pools of 6 and 2),
 * or 0. Test files call createTestDatabase() (tests/setup/fixtures.ts); the soak
 * (tests/soak/run.ts) calls this directly.
 */
export async function createDatabase(
  serverAdminUrl: string,
  bouncerPort: number,
  bouncerSmallPort = 0,
): Promise<TestDatabase> {
  const serverUrl = new URL(serverAdminUrl)
  const prefix = `pgt_${randomBytes(4).toString('hex')}`
  const database = prefix
  const appRole = `${prefix}_app`
  const ownerRole = `${prefix}_owner`
  const password = TEST_ROLE_PASSWORD
  const roles = {
    group: `${prefix}_salespeople`,
    sales: [1, 2, 3].map((n) => `${prefix}_sales_${n}`),
    notGranted: `${prefix}_sales_x`,
  }

  const server = new pg.Client({ connectionString: serverUrl.toString() })
  await server.connect()
  try {
    await server.query(`create role ${ownerRole} nologin`)
    // NOINHERIT: the login role may SET ROLE to a salesperson but never holds their privileges.
    await server.query(
      `create role ${appRole} login password '${password}' nosuperuser nobypassrls nocreatedb nocreaterole noinherit`,
    )
    await server.query(`create role ${roles.group} nologin`)
    for (const role of [...roles.sales, roles.notGranted]) {
      await server.query(`create role ${role} nologin in role ${roles.group}`)
    }
    for (const role of roles.sales) await server.query(`grant ${role} to ${appRole}`)
    await server.query(`create database ${database} owner ${ownerRole}`)
  } finally {
    await server.end()
  }

  const adminUrl = new URL(serverUrl)
  adminUrl.pathname = `/${database}`
  const appUrl = new URL(adminUrl)
  appUrl.username = appRole
  appUrl.password = password

  const admin = new pg.Pool({ connectionString: adminUrl.toString(), max: 2 })
  await admin.query(`revoke create on schema public from public`)
  await admin.query(`grant create, usage on schema public to ${ownerRole}`)
  await admin.query(`grant usage on schema public to ${appRole}, ${roles.group}`)
  await admin.query(`set role ${ownerRole}; ${SCHEMA(roles, appRole, ownerRole)}; reset role`)
  await admin.query(`insert into parents (id) values (1)`)

  const pools: pg.Pool[] = []
  const makePool = (config: pg.PoolConfig): pg.Pool => {
    const pool = new pg.Pool({ connectionString: appUrl.toString(), ...config })
    // As every pg.Pool user must: tests that terminate backends make pg-pool emit 'error' for
    // clients that pg-tenant already destroyed; unheard, that event would crash the run.
    pool.on('error', () => undefined)
    pools.push(pool)
    return pool
  }
  const bouncerUrl = new URL(appUrl)
  bouncerUrl.port = String(bouncerPort)
  const bouncerSmallUrl = new URL(appUrl)
  bouncerSmallUrl.port = String(bouncerSmallPort)
  return {
    appUrl: appUrl.toString(),
    bouncerUrl: bouncerPort ? bouncerUrl.toString() : undefined,
    bouncerSmallUrl: bouncerSmallPort ? bouncerSmallUrl.toString() : undefined,
    adminUrl: adminUrl.toString(),
    database,
    appRole,
    ownerRole,
    roles,
    pool: (config = {}) => makePool(config),
    countingPool(max: number) {
      const pool = makePool({ max })
      const counting = {
        checkouts: 0,
        async connect() {
          counting.checkouts += 1
          return pool.connect()
        },
        end: () => pool.end(),
      }
      return counting
    },
    admin: (text, values) => admin.query(text, values),
    async drop() {
      await Promise.allSettled([...pools, admin].map(endAndWait))
      const server = new pg.Client({ connectionString: serverUrl.toString() })
      await server.connect()
      try {
        await server.query(`drop database if exists ${database} with (force)`)
        for (const role of [...roles.sales, roles.notGranted, roles.group, appRole, ownerRole]) {
          await server.query(`drop role if exists ${quote(role)}`)
        }
      } finally {
        await server.end()
      }
    },
  }
}

/**
 * Ends a pool and waits until its clients' connections have closed. pg-pool's end() resolves
 * before that, and drop() then drops the database WITH (FORCE): a client still closing would get
 * the server's 57P01, which its pool re-emits as an unhandled 'error'.
 */
function endAndWait(pool: pg.Pool): Promise<void> {
  return new Promise((resolve) => {
    let open = pool.totalCount
    const timer = setTimeout(resolve, 5_000) // a client a test never released: do not hang
    const done = () => {
      clearTimeout(timer)
      resolve()
    }
    if (open === 0) {
      pool.end().then(done, done)
      return
    }
    pool.on('remove', () => {
      if (--open === 0) done()
    })
    pool.end().catch(() => {})
  })
}

/** What STATE_SQL returns. */
export interface State {
  pid: number
  session_user: string
  current_user: string
  tenant: string
}

/** The backend pid, session user, current user and tenant setting of a fresh statement. */
export const STATE_SQL = `select pg_backend_pid() as pid, session_user::text as session_user,
  current_user::text as current_user, coalesce(current_setting('app.tenant_id', true), '') as tenant`

/** What CONNECTION_STATE_SQL returns. */
export interface ConnectionState extends State {
  /** The statement ran in a transaction of its own: the connection was idle, not inside one. */
  idle: boolean
}

/**
 * STATE_SQL, and whether the connection was idle (outside any transaction) when it was sent, read
 * on the server and so the same for every pg version: the first statement of a transaction has
 * `now() = statement_timestamp()`, a statement inside a transaction opened earlier does not. Send
 * it with no values (the simple protocol: with Parse/Bind/Execute the server takes a new statement
 * timestamp at Execute), as `pool.query(CONNECTION_STATE_SQL)` does.
 */
export const CONNECTION_STATE_SQL = `${STATE_SQL}, now() = statement_timestamp() as idle`
