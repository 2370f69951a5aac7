/**
 * The ORM matrix (tests/setup/orm-matrix.ts) for MikroORM 6 over `db.pool`. MikroORM 6 runs on
 * Knex and reuses a Knex instance passed as `driverOptions`; that instance takes `db.pool` through
 * Knex's `connectionPool` (Knex 3.3.0 and later: package.json's `overrides` lifts MikroORM's pin
 * of knex 3.2.10). MikroORM 7 would need Node 22.17, so it is not in the matrix.
 */
import { knex, type Knex } from 'knex'
import {
  EntitySchema,
  OptionalProps,
  IsolationLevel,
  MikroORM,
  PostgreSqlKnexDialect,
  type EntityManager,
} from '@mikro-orm/postgresql'
import { describeOrmMatrix, SERVER_STATE_SQL, type OrmQueries, type ServerState } from '../setup/orm-matrix.js'

interface Event {
  [OptionalProps]?: 'orgId' // the database fills it in
  id: string
  orgId: string
  kind: string
  payload: string | null
}

const EventEntity = new EntitySchema<Event>({
  name: 'Event',
  tableName: 'events',
  properties: {
    id: { type: 'bigint', primary: true, autoincrement: true },
    // The database fills it from the tenant setting.
    orgId: { type: 'string', fieldName: 'org_id', defaultRaw: `current_setting('app.tenant_id', true)` },
    kind: { type: 'string' },
    payload: { type: 'string', nullable: true },
  },
})

const LEVELS = {
  serializable: IsolationLevel.SERIALIZABLE,
  'repeatable read': IsolationLevel.REPEATABLE_READ,
} as const

/** `fork()`: a fresh EntityManager per request (outside a transaction), as MikroORM wants. */
function queries(em: () => EntityManager): OrmQueries {
  return {
    insert: async (kind, payload) => {
      const m = em()
      m.create(EventEntity, { kind, payload })
      await m.flush()
    },
    insertFor: async (orgId, kind, payload) => {
      const m = em()
      m.create(EventEntity, { orgId, kind, payload })
      await m.flush()
    },
    list: async (kind) =>
      (await em().find(EventEntity, { kind }, { orderBy: { id: 'asc' } })).map(({ orgId, payload }) => ({ orgId, payload })),
    state: async () => (await em().execute<ServerState[]>(SERVER_STATE_SQL))[0]!,
  }
}

describeOrmMatrix({
  name: 'MikroORM',
  async open(db, t) {
    // docs/orms.md, MikroORM
    const orm = await db.withoutTenant(() =>
      MikroORM.init({
        entities: [EventEntity],
        dbName: t.database,
        ensureDatabase: false,
        // MikroORM's own Knex dialect, typed apart from Knex's Client class.
        driverOptions: knex({ client: PostgreSqlKnexDialect as unknown as typeof Knex.Client, connectionPool: db.pool }),
      }),
    )
    return {
      ...queries(() => orm.em.fork()),
      transaction: (fn, isolation) =>
        orm.em.fork().transactional((em) => fn(queries(() => em)), isolation ? { isolationLevel: LEVELS[isolation] } : {}),
      close: () => orm.close(), // destroys the Knex instance, which leaves db.pool alone
    }
  },
  // DriverException (here its subclass for 42501): MikroORM copies every own property of pg's
  // DatabaseError (code, routine, ...) onto it and keeps no reference to the original.
  pgErrorOf: (err) => err as Error,
  keepsRoutine: true,
})
