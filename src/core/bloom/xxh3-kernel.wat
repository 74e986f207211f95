;; XXH3-64 kernel for Bloom filters: the source of xxh3-kernel-bytes.ts.
;;
;; After editing this file run `npm run build:wasm`, which assembles it with
;; wabt (scripts/build-wasm.ts) and rewrites xxh3-kernel-bytes.ts; the test
;; test/core/bloom/xxh3-kernel.node.ts fails while the two disagree.
;; Keep the module below 4 KB: Chromium refuses to compile larger modules
;; synchronously on the main thread.
;;
;; The kernel hashes inputs of 0..240 bytes with XXH3-64 (seeded, default
;; secret), path by path as `xxh3Reference` in xxh3.ts, and can turn one item
;; into a whole run of Bloom filter indices in a single call from JavaScript.
;;
;; Memory: one page (64 KiB) that never grows, so JavaScript views on it stay
;; valid. Offsets are repeated in xxh3.ts and must match:
;;
;;   128..320  the 192-byte default secret, written by JavaScript at start-up.
;;             Not at 0, so the 129..240 path can address
;;             `secret + 16 * (round - 8) + 3` as `16 * round + 3`.
;;   384..624  the item to hash (at most 240 bytes), written by JavaScript
;;   640..     output: one u64 hash, or up to 4096 u32 Bloom indices
;;
;; Multi-byte loads and stores say align=1 (the item and secret are read at
;; odd offsets); the hint does not change what they do.
;;
;; The hot arithmetic (mix16B and the 64x64->128 multiply) is written out at
;; every use instead of being called: measured about 25% faster in V8, and
;; the module stays small. Each copy is marked `mul128_fold64`.
(module
  (memory (export "memory") 1 1)

  ;; run(length, seedLow, seedHigh, count, maxIndex, mask) -> i32
  ;;
  ;; Hashes the `length` bytes at 384, starting at seed
  ;; `seedHigh << 32 | seedLow`.
  ;;
  ;; count = 0: writes that one 64-bit hash to 640 and returns 0.
  ;;
  ;; count > 0: for seed, seed + 1, ..., keeps `value = hash & mask` if
  ;; `value <= maxIndex` (rejection sampling when the bit count is not a power
  ;; of two) until `count` values are written to 640 as u32, then returns the
  ;; low 32 bits of the first seed not yet tried.
  (func $run (export "run")
    (param $length i32)
    (param $seed_low i32)
    (param $seed_high i32)
    (param $count i32)
    (param $max_index i32)
    (param $mask i32)
    (result i32)
    (local $seed i64)            ;; the seed being hashed
    (local $out i32)             ;; where the next index goes
    (local $out_end i32)         ;; 640 + 4 * count
    (local $value i32)           ;; candidate Bloom index
    (local $acc i64)             ;; the accumulator of every path
    (local $low i64)             ;; 4..16 byte paths
    (local $high i64)            ;; 9..16 byte path
    (local $i i32)               ;; byte offset of the current 16-byte round
    (local $length_x_prime i64)  ;; length * PRIME64_1, the start of the 17..240 paths
    ;; scratch of mul128_fold64(lhs, rhs)
    (local $lhs i64)
    (local $rhs i64)
    (local $lhs_low i64)
    (local $lhs_high i64)
    (local $rhs_low i64)
    (local $rhs_high i64)
    (local $low_low i64)         ;; lhs_low * rhs_low
    (local $high_low i64)        ;; lhs_high * rhs_low
    (local $cross i64)           ;; bits 32..95 of the 128-bit product

    (local.set $seed
      (i64.or
        (i64.extend_i32_u (local.get $seed_low))
        (i64.shl (i64.extend_i32_u (local.get $seed_high)) (i64.const 32))))
    (local.set $out (i32.const 640))
    (local.set $out_end (i32.add (i32.shl (local.get $count) (i32.const 2)) (i32.const 640)))
    (local.set $length_x_prime
      (i64.mul (i64.extend_i32_u (local.get $length)) (i64.const 0x9E3779B185EBCA87)))  ;; PRIME64_1

    (loop $next_seed
      ;; ---- acc = XXH3-64(item, seed): each length range leaves the hash
      ;; on the stack and branches out of $hashed
      (local.set $acc
        (block $hashed (result i64)

          ;; ---- 129..240 bytes: eight rounds of mix16B, avalanche, the
          ;; remaining whole rounds against the secret shifted by 3, then
          ;; the last 16 bytes against secret + 119 (136 - 17)
          (if (i32.gt_u (local.get $length) (i32.const 128))
            (then
              (local.set $acc (local.get $length_x_prime))
              (local.set $i (i32.const 0))
              (loop $first_rounds
                ;; acc += mix16B(item + i, secret + i):
                ;; lhs = readLE64(item + i)     ^ (readLE64(secret + i)     + seed)
                ;; rhs = readLE64(item + i + 8) ^ (readLE64(secret + i + 8) - seed)
                (local.set $lhs
                  (i64.xor
                    (i64.load offset=384 align=1 (local.get $i))
                    (i64.add (i64.load offset=128 align=1 (local.get $i)) (local.get $seed))))
                (local.set $rhs
                  (i64.xor
                    (i64.load offset=392 align=1 (local.get $i))
                    (i64.sub (i64.load offset=136 align=1 (local.get $i)) (local.get $seed))))
                ;; acc += mul128_fold64(lhs, rhs): the 128-bit product of lhs
                ;; and rhs, its two halves XOR-ed, from four 32x32->64 products
                (local.set $lhs_low (i64.extend_i32_u (i32.wrap_i64 (local.get $lhs))))
                (local.set $lhs_high (i64.shr_u (local.get $lhs) (i64.const 32)))
                (local.set $rhs_low (i64.extend_i32_u (i32.wrap_i64 (local.get $rhs))))
                (local.set $rhs_high (i64.shr_u (local.get $rhs) (i64.const 32)))
                (local.set $low_low (i64.mul (local.get $lhs_low) (local.get $rhs_low)))
                (local.set $high_low (i64.mul (local.get $lhs_high) (local.get $rhs_low)))
                ;; cross = (low_low >> 32) + low32(high_low) + lhs_low * rhs_high
                ;; (at most (2^32 - 1) * (2^32 + 1) < 2^64: never overflows)
                (local.set $cross
                  (i64.add
                    (i64.add
                      (i64.shr_u (local.get $low_low) (i64.const 32))
                      (i64.extend_i32_u (i32.wrap_i64 (local.get $high_low))))
                    (i64.mul (local.get $lhs_low) (local.get $rhs_high))))
                (local.set $acc
                  (i64.add
                    (local.get $acc)
                    (i64.xor
                      ;; upper half: (high_low >> 32) + (cross >> 32) + lhs_high * rhs_high
                      (i64.add
                        (i64.add
                          (i64.shr_u (local.get $high_low) (i64.const 32))
                          (i64.shr_u (local.get $cross) (i64.const 32)))
                        (i64.mul (local.get $lhs_high) (local.get $rhs_high)))
                      ;; lower half: (cross << 32) | low32(low_low)
                      (i64.or
                        (i64.shl (local.get $cross) (i64.const 32))
                        (i64.extend_i32_u (i32.wrap_i64 (local.get $low_low)))))))
                ;; rounds 0..7
                (br_if $first_rounds
                  (i32.ne
                    (local.tee $i (i32.add (local.get $i) (i32.const 16)))
                    (i32.const 128))))

              ;; acc = avalanche(acc)
              (local.set $acc
                (i64.mul
                  (i64.xor (local.get $acc) (i64.shr_u (local.get $acc) (i64.const 37)))
                  (i64.const 0x165667919E3779F9)))  ;; PRIME_MX1
              (local.set $acc (i64.xor (local.get $acc) (i64.shr_u (local.get $acc) (i64.const 32))))

              ;; rounds 8 .. length / 16 - 1 (i = 16 * round): the secret
              ;; of round r is at 128 + 16 * (r - 8) + 3 = i + 3
              (block $rounds_done
                (loop $more_rounds
                  (br_if $rounds_done
                    (i32.gt_u (i32.add (local.get $i) (i32.const 16)) (local.get $length)))
                  ;; acc += mix16B(item + i, secret + i - 128 + 3)
                  (local.set $lhs
                    (i64.xor
                      (i64.load offset=384 align=1 (local.get $i))
                      (i64.add (i64.load offset=3 align=1 (local.get $i)) (local.get $seed))))
                  (local.set $rhs
                    (i64.xor
                      (i64.load offset=392 align=1 (local.get $i))
                      (i64.sub (i64.load offset=11 align=1 (local.get $i)) (local.get $seed))))
                  ;; acc += mul128_fold64(lhs, rhs), as above
                  (local.set $lhs_low (i64.extend_i32_u (i32.wrap_i64 (local.get $lhs))))
                  (local.set $lhs_high (i64.shr_u (local.get $lhs) (i64.const 32)))
                  (local.set $rhs_low (i64.extend_i32_u (i32.wrap_i64 (local.get $rhs))))
                  (local.set $rhs_high (i64.shr_u (local.get $rhs) (i64.const 32)))
                  (local.set $low_low (i64.mul (local.get $lhs_low) (local.get $rhs_low)))
                  (local.set $high_low (i64.mul (local.get $lhs_high) (local.get $rhs_low)))
                  (local.set $cross
                    (i64.add
                      (i64.add
                        (i64.shr_u (local.get $low_low) (i64.const 32))
                        (i64.extend_i32_u (i32.wrap_i64 (local.get $high_low))))
                      (i64.mul (local.get $lhs_low) (local.get $rhs_high))))
                  (local.set $acc
                    (i64.add
                      (local.get $acc)
                      (i64.xor
                        (i64.add
                          (i64.add
                            (i64.shr_u (local.get $high_low) (i64.const 32))
                            (i64.shr_u (local.get $cross) (i64.const 32)))
                          (i64.mul (local.get $lhs_high) (local.get $rhs_high)))
                        (i64.or
                          (i64.shl (local.get $cross) (i64.const 32))
                          (i64.extend_i32_u (i32.wrap_i64 (local.get $low_low)))))))
                  (local.set $i (i32.add (local.get $i) (i32.const 16)))
                  (br $more_rounds)))

              ;; acc += mix16B(item + length - 16, secret + 119):
              ;; item at 384 + length - 16, secret at 128 + 119
              (local.set $lhs
                (i64.xor
                  (i64.load offset=368 align=1 (local.get $length))
                  (i64.add (i64.load offset=247 align=1 (i32.const 0)) (local.get $seed))))
              (local.set $rhs
                (i64.xor
                  (i64.load offset=376 align=1 (local.get $length))
                  (i64.sub (i64.load offset=255 align=1 (i32.const 0)) (local.get $seed))))
              ;; acc += mul128_fold64(lhs, rhs), as above
              (local.set $lhs_low (i64.extend_i32_u (i32.wrap_i64 (local.get $lhs))))
              (local.set $lhs_high (i64.shr_u (local.get $lhs) (i64.const 32)))
              (local.set $rhs_low (i64.extend_i32_u (i32.wrap_i64 (local.get $rhs))))
              (local.set $rhs_high (i64.shr_u (local.get $rhs) (i64.const 32)))
              (local.set $low_low (i64.mul (local.get $lhs_low) (local.get $rhs_low)))
              (local.set $high_low (i64.mul (local.get $lhs_high) (local.get $rhs_low)))
              (local.set $cross
                (i64.add
                  (i64.add
                    (i64.shr_u (local.get $low_low) (i64.const 32))
                    (i64.extend_i32_u (i32.wrap_i64 (local.get $high_low))))
                  (i64.mul (local.get $lhs_low) (local.get $rhs_high))))
              (local.set $acc
                (i64.add
                  (local.get $acc)
                  (i64.xor
                    (i64.add
                      (i64.add
                        (i64.shr_u (local.get $high_low) (i64.const 32))
                        (i64.shr_u (local.get $cross) (i64.const 32)))
                      (i64.mul (local.get $lhs_high) (local.get $rhs_high)))
                    (i64.or
                      (i64.shl (local.get $cross) (i64.const 32))
                      (i64.extend_i32_u (i32.wrap_i64 (local.get $low_low)))))))

              ;; hash = avalanche(acc)
              (local.set $acc
                (i64.mul
                  (i64.xor (local.get $acc) (i64.shr_u (local.get $acc) (i64.const 37)))
                  (i64.const 0x165667919E3779F9)))  ;; PRIME_MX1
              (br $hashed (i64.xor (local.get $acc) (i64.shr_u (local.get $acc) (i64.const 32))))))

          ;; ---- 17..128 bytes: ceil(length / 32) pairs of mix16B, the
          ;; j-th pair (i = 16 * j) taking 16 bytes from the front with
          ;; secret + 32j and 16 bytes from the back with secret + 32j + 16.
          ;; (xxhash.h adds the pairs from the innermost out; addition
          ;; modulo 2^64 does not mind the order.)
          (if (i32.gt_u (local.get $length) (i32.const 16))
            (then
              (local.set $acc (local.get $length_x_prime))
              (local.set $i (i32.const 0))
              (loop $pairs
                ;; acc += mix16B(item + i, secret + 2i)
                (local.set $lhs
                  (i64.xor
                    (i64.load offset=384 align=1 (local.get $i))
                    (i64.add
                      (i64.load offset=128 align=1 (i32.add (local.get $i) (local.get $i)))
                      (local.get $seed))))
                (local.set $rhs
                  (i64.xor
                    (i64.load offset=392 align=1 (local.get $i))
                    (i64.sub
                      (i64.load offset=136 align=1 (i32.add (local.get $i) (local.get $i)))
                      (local.get $seed))))
                ;; acc += mul128_fold64(lhs, rhs), as above
                (local.set $lhs_low (i64.extend_i32_u (i32.wrap_i64 (local.get $lhs))))
                (local.set $lhs_high (i64.shr_u (local.get $lhs) (i64.const 32)))
                (local.set $rhs_low (i64.extend_i32_u (i32.wrap_i64 (local.get $rhs))))
                (local.set $rhs_high (i64.shr_u (local.get $rhs) (i64.const 32)))
                (local.set $low_low (i64.mul (local.get $lhs_low) (local.get $rhs_low)))
                (local.set $high_low (i64.mul (local.get $lhs_high) (local.get $rhs_low)))
                (local.set $cross
                  (i64.add
                    (i64.add
                      (i64.shr_u (local.get $low_low) (i64.const 32))
                      (i64.extend_i32_u (i32.wrap_i64 (local.get $high_low))))
                    (i64.mul (local.get $lhs_low) (local.get $rhs_high))))
                (local.set $acc
                  (i64.add
                    (local.get $acc)
                    (i64.xor
                      (i64.add
                        (i64.add
                          (i64.shr_u (local.get $high_low) (i64.const 32))
                          (i64.shr_u (local.get $cross) (i64.const 32)))
                        (i64.mul (local.get $lhs_high) (local.get $rhs_high)))
                      (i64.or
                        (i64.shl (local.get $cross) (i64.const 32))
                        (i64.extend_i32_u (i32.wrap_i64 (local.get $low_low)))))))

                ;; acc += mix16B(item + length - 16 - i, secret + 2i + 16)
                (local.set $lhs
                  (i64.xor
                    (i64.load offset=368 align=1 (i32.sub (local.get $length) (local.get $i)))
                    (i64.add
                      (i64.load offset=144 align=1 (i32.add (local.get $i) (local.get $i)))
                      (local.get $seed))))
                (local.set $rhs
                  (i64.xor
                    (i64.load offset=376 align=1 (i32.sub (local.get $length) (local.get $i)))
                    (i64.sub
                      (i64.load offset=152 align=1 (i32.add (local.get $i) (local.get $i)))
                      (local.get $seed))))
                ;; acc += mul128_fold64(lhs, rhs), as above
                (local.set $lhs_low (i64.extend_i32_u (i32.wrap_i64 (local.get $lhs))))
                (local.set $lhs_high (i64.shr_u (local.get $lhs) (i64.const 32)))
                (local.set $rhs_low (i64.extend_i32_u (i32.wrap_i64 (local.get $rhs))))
                (local.set $rhs_high (i64.shr_u (local.get $rhs) (i64.const 32)))
                (local.set $low_low (i64.mul (local.get $lhs_low) (local.get $rhs_low)))
                (local.set $high_low (i64.mul (local.get $lhs_high) (local.get $rhs_low)))
                (local.set $cross
                  (i64.add
                    (i64.add
                      (i64.shr_u (local.get $low_low) (i64.const 32))
                      (i64.extend_i32_u (i32.wrap_i64 (local.get $high_low))))
                    (i64.mul (local.get $lhs_low) (local.get $rhs_high))))
                (local.set $acc
                  (i64.add
                    (local.get $acc)
                    (i64.xor
                      (i64.add
                        (i64.add
                          (i64.shr_u (local.get $high_low) (i64.const 32))
                          (i64.shr_u (local.get $cross) (i64.const 32)))
                        (i64.mul (local.get $lhs_high) (local.get $rhs_high)))
                      (i64.or
                        (i64.shl (local.get $cross) (i64.const 32))
                        (i64.extend_i32_u (i32.wrap_i64 (local.get $low_low)))))))

                ;; next pair while its front half starts before the middle:
                ;; 2 * (i + 16) < length
                (br_if $pairs
                  (i32.lt_u
                    (i32.add
                      (local.tee $i (i32.add (local.get $i) (i32.const 16)))
                      (local.get $i))
                    (local.get $length))))

              ;; hash = avalanche(acc)
              (local.set $acc
                (i64.mul
                  (i64.xor (local.get $acc) (i64.shr_u (local.get $acc) (i64.const 37)))
                  (i64.const 0x165667919E3779F9)))  ;; PRIME_MX1
              (br $hashed (i64.xor (local.get $acc) (i64.shr_u (local.get $acc) (i64.const 32))))))

          ;; ---- 9..16 bytes: the first and the last 8 bytes (they may overlap)
          (if (i32.gt_u (local.get $length) (i32.const 8))
            (then
              ;; low = readLE64(item) ^ (bitflip + seed),
              ;; bitflip = readLE64(secret + 24) ^ readLE64(secret + 32)
              (local.set $low
                (i64.xor
                  (i64.load offset=384 align=1 (i32.const 0))
                  (i64.add (i64.const 0x6782737BEA4239B9) (local.get $seed))))
              ;; high = readLE64(item + length - 8) ^ (bitflip - seed),
              ;; bitflip = readLE64(secret + 40) ^ readLE64(secret + 48)
              (local.set $high
                (i64.xor
                  (i64.load offset=376 align=1 (local.get $length))
                  (i64.sub (i64.const 0xAF56BC3B0996523A) (local.get $seed))))
              ;; acc = byteSwap64(low): swap the bytes of each 16-bit lane,
              ;; then the 16-bit lanes of each 32-bit half, then the halves
              (local.set $acc
                (i64.or
                  (i64.shl (i64.and (local.get $low) (i64.const 0x00FF00FF00FF00FF)) (i64.const 8))
                  (i64.and (i64.shr_u (local.get $low) (i64.const 8)) (i64.const 0x00FF00FF00FF00FF))))
              (local.set $acc
                (i64.rotl
                  (i64.or
                    (i64.shl (i64.and (local.get $acc) (i64.const 0x0000FFFF0000FFFF)) (i64.const 16))
                    (i64.and (i64.shr_u (local.get $acc) (i64.const 16)) (i64.const 0x0000FFFF0000FFFF)))
                  (i64.const 32)))
              ;; acc = length + byteSwap64(low) + high + mul128_fold64(low, high)
              (local.set $acc
                (i64.add
                  (i64.add (i64.extend_i32_u (local.get $length)) (local.get $acc))
                  (local.get $high)))
              (local.set $lhs (local.get $low))
              (local.set $rhs (local.get $high))
              ;; acc += mul128_fold64(lhs, rhs), as above
              (local.set $lhs_low (i64.extend_i32_u (i32.wrap_i64 (local.get $lhs))))
              (local.set $lhs_high (i64.shr_u (local.get $lhs) (i64.const 32)))
              (local.set $rhs_low (i64.extend_i32_u (i32.wrap_i64 (local.get $rhs))))
              (local.set $rhs_high (i64.shr_u (local.get $rhs) (i64.const 32)))
              (local.set $low_low (i64.mul (local.get $lhs_low) (local.get $rhs_low)))
              (local.set $high_low (i64.mul (local.get $lhs_high) (local.get $rhs_low)))
              (local.set $cross
                (i64.add
                  (i64.add
                    (i64.shr_u (local.get $low_low) (i64.const 32))
                    (i64.extend_i32_u (i32.wrap_i64 (local.get $high_low))))
                  (i64.mul (local.get $lhs_low) (local.get $rhs_high))))
              (local.set $acc
                (i64.add
                  (local.get $acc)
                  (i64.xor
                    (i64.add
                      (i64.add
                        (i64.shr_u (local.get $high_low) (i64.const 32))
                        (i64.shr_u (local.get $cross) (i64.const 32)))
                      (i64.mul (local.get $lhs_high) (local.get $rhs_high)))
                    (i64.or
                      (i64.shl (local.get $cross) (i64.const 32))
                      (i64.extend_i32_u (i32.wrap_i64 (local.get $low_low)))))))

              ;; hash = avalanche(acc)
              (local.set $acc
                (i64.mul
                  (i64.xor (local.get $acc) (i64.shr_u (local.get $acc) (i64.const 37)))
                  (i64.const 0x165667919E3779F9)))  ;; PRIME_MX1
              (br $hashed (i64.xor (local.get $acc) (i64.shr_u (local.get $acc) (i64.const 32))))))

          ;; ---- 4..8 bytes: the first and the last 4 bytes as one u64
          (if (i32.ge_u (local.get $length) (i32.const 4))
            (then
              ;; low = seed ^ (byteSwap32(low 32 bits of seed) << 32); the byte
              ;; swap exchanges the bytes of each 16-bit lane, then the lanes
              (local.set $low
                (i64.xor
                  (local.get $seed)
                  (i64.shl
                    (i64.extend_i32_u
                      (i32.rotl
                        (i32.or
                          (i32.rotr (i32.and (i32.wrap_i64 (local.get $seed)) (i32.const 0xFF00FF00)) (i32.const 8))
                          (i32.rotl (i32.and (i32.wrap_i64 (local.get $seed)) (i32.const 0x00FF00FF)) (i32.const 8)))
                        (i32.const 16)))
                    (i64.const 32))))
              ;; acc = (readLE32(item + length - 4) + (readLE32(item) << 32))
              ;;       ^ (bitflip - low),
              ;; bitflip = readLE64(secret + 8) ^ readLE64(secret + 16)
              (local.set $acc
                (i64.xor
                  (i64.add
                    (i64.load32_u offset=380 align=1 (local.get $length))
                    (i64.shl (i64.load32_u offset=384 align=1 (i32.const 0)) (i64.const 32)))
                  (i64.sub (i64.const 0xC73AB174C5ECD5A2) (local.get $low))))
              ;; hash = rrmxmx(acc, length)
              (local.set $acc
                (i64.mul
                  (i64.xor
                    (local.get $acc)
                    (i64.xor
                      (i64.rotl (local.get $acc) (i64.const 49))
                      (i64.rotl (local.get $acc) (i64.const 24))))
                  (i64.const 0x9FB21C651E98DF25)))  ;; PRIME_MX2
              (local.set $acc
                (i64.mul
                  (i64.xor
                    (local.get $acc)
                    (i64.add
                      (i64.shr_u (local.get $acc) (i64.const 35))
                      (i64.extend_i32_u (local.get $length))))
                  (i64.const 0x9FB21C651E98DF25)))  ;; PRIME_MX2
              (br $hashed (i64.xor (local.get $acc) (i64.shr_u (local.get $acc) (i64.const 28))))))

          ;; ---- 0..3 bytes
          (if (local.get $length)
            (then
              ;; acc = (first << 16 | middle << 24 | last | length << 8)
              ;;       ^ (bitflip + seed),
              ;; bitflip = readLE32(secret) ^ readLE32(secret + 4)
              (local.set $acc
                (i64.xor
                  (i64.extend_i32_u
                    (i32.or
                      (i32.or
                        (i32.or
                          (i32.shl (i32.load8_u offset=384 (i32.const 0)) (i32.const 16))
                          (i32.shl
                            (i32.load8_u offset=384 (i32.shr_u (local.get $length) (i32.const 1)))
                            (i32.const 24)))
                        (i32.load8_u offset=383 (local.get $length)))
                      (i32.shl (local.get $length) (i32.const 8))))
                  (i64.add (i64.const 0x87275A9B) (local.get $seed)))))
            (else
              ;; empty input: acc = seed ^ readLE64(secret + 56) ^ readLE64(secret + 64)
              (local.set $acc (i64.xor (local.get $seed) (i64.const 0x8726F9105DC21DDC)))))
          ;; hash = XXH64_avalanche(acc), the result of $hashed
          (local.set $acc
            (i64.mul
              (i64.xor (local.get $acc) (i64.shr_u (local.get $acc) (i64.const 33)))
              (i64.const 0xC2B2AE3D27D4EB4F)))  ;; PRIME64_2
          (local.set $acc
            (i64.mul
              (i64.xor (local.get $acc) (i64.shr_u (local.get $acc) (i64.const 29)))
              (i64.const 0x165667B19E3779F9)))  ;; PRIME64_3
          (i64.xor (local.get $acc) (i64.shr_u (local.get $acc) (i64.const 32)))))

      ;; ---- count = 0: the hash itself
      (if (i32.eqz (local.get $count))
        (then
          (i64.store align=1 (i32.const 640) (local.get $acc))
          (return (i32.const 0))))

      ;; ---- otherwise the next Bloom index, unless rejected
      (local.set $value (i32.and (i32.wrap_i64 (local.get $acc)) (local.get $mask)))
      (local.set $seed (i64.add (local.get $seed) (i64.const 1)))
      (if (i32.le_u (local.get $value) (local.get $max_index))
        (then
          (i32.store align=1 (local.get $out) (local.get $value))
          (if (i32.eq
                (local.tee $out (i32.add (local.get $out) (i32.const 4)))
                (local.get $out_end))
            (then
              (return (i32.wrap_i64 (local.get $seed)))))))
      (br $next_seed))
    (unreachable)))
