import type { CID } from 'multiformats/cid'

/**
 * Typed errors thrown by helia-car-mirror. Each class sets `name` (and a static
 * `name`) so callers can test `err.name === UnknownCodecError.name` across
 * realms, the way Helia and libp2p errors are checked.
 *
 * @example
 *
 * ```ts
 * import { HashMismatchError } from 'helia-car-mirror'
 *
 * try {
 *   await verifier.verify(cid, bytes)
 * } catch (err: any) {
 *   if (err.name === HashMismatchError.name) {
 *     // the peer sent bytes that do not hash to the CID
 *   }
 * }
 * ```
 */

/** A block uses a codec this node cannot decode, so its links cannot be followed */
export class UnknownCodecError extends Error {
  static name = 'UnknownCodecError'
  name = 'UnknownCodecError'
}

/** A CID uses a multihash function this node cannot compute, so the block cannot be verified */
export class UnsupportedHashError extends Error {
  static name = 'UnsupportedHashError'
  name = 'UnsupportedHashError'
}

/** A block's bytes do not hash to the digest in its CID */
export class HashMismatchError extends Error {
  static name = 'HashMismatchError'
  name = 'HashMismatchError'
}

/** A block's bytes could not be decoded by its codec */
export class InvalidBlockError extends Error {
  static name = 'InvalidBlockError'
  name = 'InvalidBlockError'
}

/** A block that a walk needed is not in the local blockstore */
export class BlockNotFoundError extends Error {
  static name = 'BlockNotFoundError'
  name = 'BlockNotFoundError'
}

/** A peer sent bytes that do not form a valid CAR Mirror frame or message */
export class ProtocolError extends Error {
  static name = 'ProtocolError'
  name = 'ProtocolError'
}

/** A frame, block, Bloom filter or list went over a configured limit */
export class LimitExceededError extends Error {
  static name = 'LimitExceededError'
  name = 'LimitExceededError'
}

/**
 * The sender does not hold some blocks the receiver needs. `cids` names them
 * (at most the first few hundred).
 */
export class BlocksNotAvailableError extends Error {
  static name = 'BlocksNotAvailableError'
  name = 'BlocksNotAvailableError'
  readonly cids: CID[]

  constructor (message: string, cids: CID[] = []) {
    super(message)
    this.cids = cids
  }
}

/** The remote peer refused the session (for example a push it does not allow) */
export class SessionRefusedError extends Error {
  static name = 'SessionRefusedError'
  name = 'SessionRefusedError'
}

/** The remote peer ended the session with an error frame */
export class RemoteError extends Error {
  static name = 'RemoteError'
  name = 'RemoteError'
  /** The error code the remote peer sent */
  readonly code: string

  constructor (message: string, code: string) {
    super(message)
    this.code = code
  }
}

/** The blockstore failed to read or write a block; `cause` holds its error */
export class BlockstoreError extends Error {
  static name = 'BlockstoreError'
  name = 'BlockstoreError'
}

/** The session saw no traffic for longer than its idle timeout */
export class SessionTimeoutError extends Error {
  static name = 'SessionTimeoutError'
  name = 'SessionTimeoutError'
}

/** The stream ended before the session was complete */
export class SessionClosedError extends Error {
  static name = 'SessionClosedError'
  name = 'SessionClosedError'
}

/** `helia.carMirror` was used before `helia.start()` made it ready */
export class NotStartedError extends Error {
  static name = 'NotStartedError'
  name = 'NotStartedError'
}

/**
 * CAR Mirror was added to a Helia node without libp2p (for example
 * `createHeliaLight()` without `withLibp2p`): it has no way to reach peers
 */
export class MissingLibp2pError extends Error {
  static name = 'MissingLibp2pError'
  name = 'MissingLibp2pError'
}

/** `pull(..., { pin: true })` on a node without Helia's pins (a bare `createCarMirror` without the `pins` component) */
export class PinningUnavailableError extends Error {
  static name = 'PinningUnavailableError'
  name = 'PinningUnavailableError'
}

/**
 * A pull that named no peer found none that could serve it: no provider
 * was given, connected or found through routing, or every one failed
 * (`errors` holds each one's error, in the order they were tried)
 */
export class NoProviderError extends Error {
  static name = 'NoProviderError'
  name = 'NoProviderError'
  readonly errors: Error[]

  constructor (message: string, errors: Error[] = []) {
    super(message, { cause: errors.at(-1) })
    this.errors = errors
  }
}
