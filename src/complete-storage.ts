import { Key } from 'interface-datastore'
import type { CompleteRecordStorage } from './core/complete-record.ts'
import type { Datastore } from 'interface-datastore'

/**
 * Keeps CAR Mirror's record of whole DAGs (see `CompleteRecord`) in a
 * datastore, such as Helia's: it lasts as long as the datastore does.
 *
 * @example
 *
 * ```ts
 * const record = new CompleteRecord({ storage: datastoreRecordStorage(helia.datastore), maxRoots: 64, maxCids: 100_000 })
 * ```
 */
export function datastoreRecordStorage (datastore: Pick<Datastore, 'get' | 'put' | 'delete'>): CompleteRecordStorage {
  return {
    get: async (key, options) => {
      try {
        return await datastore.get(new Key(key), options)
      } catch (err) {
        if ((err as Error).name === 'NotFoundError') {
          return undefined
        }
        throw err
      }
    },
    put: async (key, value, options) => {
      await datastore.put(new Key(key), value, options)
    },
    delete: async (key, options) => {
      await datastore.delete(new Key(key), options)
    }
  }
}
