/**
 * The ORM matrix (tests/setup/orm-matrix.ts) for TypeORM 0.3 over `db.pool`. TypeORM builds its
 * pool with `new driver.Pool(options)` from its `driver` option, so a `driver` whose `Pool` hands
 * back `db.pool` is all it takes. Entities are EntitySchemas: no decorators, no tsconfig change.
 * TypeORM sends every query through `db.pool.connect()` (callback form).
 */
import { DataSource, EntitySchema, type EntityManager } from 'typeorm'
import { describeOrmMatrix, SERVER_STATE_SQL, type OrmQueries, type ServerState } from '../setup/orm-matrix.js'

interface Event {
  id: string
  orgId: string
  kind: string
  payload: string | null
}

const EventEntity = new EntitySchema<Event>({
  name: 'Event',
  tableName: 'events',
  columns: {
    id: { type: 'bigint', primary: true, generated: 'increment' },
    // The database fills it from the tenant setting.
    orgId: { type: 'text', name: 'org_id', default: () => "current_setting('app.tenant_id', true)" },
    kind: { type: 'text' },
    payload: { type: 'text', nullable: true },
  },
})

const LEVELS = { serializable: 'SERIALIZABLE', 'repeatable read': 'REPEATABLE READ' } as const

function queries(manager: EntityManager): OrmQueries {
  const events = manager.getRepository(EventEntity)
  return {
    insert: (kind, payload) => events.insert({ kind, payload }),
    insertFor: (orgId, kind, payload) => events.insert({ orgId, kind, payload }),
    list: async (kind) =>
      (await events.find({ where: { kind }, order: { id: 'ASC' } })).map(({ orgId, payload }) => ({ orgId, payload })),
    state: async () => ((await manager.query(SERVER_STATE_SQL)) as ServerState[])[0]!,
  }
}

describeOrmMatrix({
  name: 'TypeORM',
  async open(db) {
    // docs/orms.md, TypeORM
    const dataSource = new DataSource({
      type: 'postgres',
      driver: { Pool: function TenantPgPool() { return db.pool } }, // `new Pool(...)` is db.pool
      entities: [EventEntity],
    })
    // initialize() reads the server version, database and schema: no tenant's business.
    await db.withoutTenant(() => dataSource.initialize())
    return {
      ...queries(dataSource.manager),
      transaction: (fn, isolation) =>
        isolation
          ? dataSource.transaction(LEVELS[isolation], (manager) => fn(queries(manager)))
          : dataSource.transaction((manager) => fn(queries(manager))),
      close: () => dataSource.destroy(), // ends db.pool
    }
  },
  // QueryFailedError: pg's DatabaseError is its `driverError`, and its fields (code, routine, ...)
  // are copied onto the QueryFailedError itself.
  pgErrorOf: (err) => (err as { driverError?: Error }).driverError,
  keepsRoutine: true,
})
