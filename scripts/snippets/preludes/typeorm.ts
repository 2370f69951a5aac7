// The README's TypeORM recipe: the entity (docs/orms.md#typeorm).
import { EntitySchema as TypeOrmEntitySchema } from 'typeorm'

const EventEntity = new TypeOrmEntitySchema<{ id: string; orgId: string; kind: string; payload: string | null }>({
  name: 'Event',
  tableName: 'events',
  columns: {
    id: { type: 'bigint', primary: true, generated: 'increment' },
    orgId: { type: 'text', name: 'org_id', default: () => "current_setting('app.tenant_id', true)" },
    kind: { type: 'text' },
    payload: { type: 'text', nullable: true },
  },
})
