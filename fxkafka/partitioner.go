package fxkafka

// hashPartition places a keyed record as the clients a service's other
// producers use do, so that a key lands on the same partition whichever
// client wrote it: "fnv1a" as sarama's NewHashPartitioner (its default),
// "murmur2" as Kafka's Java client, franz-go's StickyKeyPartitioner and
// librdkafka's murmur2_random.
func hashPartition(hash string, key []byte, n int32) int32 {
	if hash == "murmur2" {
		return int32(murmur2(key)&0x7fffffff) % n
	}
	h := uint32(2166136261) // FNV-1a, 32 bits
	for _, b := range key {
		h ^= uint32(b)
		h *= 16777619
	}
	p := int32(h) % n
	if p < 0 {
		p = -p
	}
	return p
}

// murmur2 is Kafka's murmur2 hash (org.apache.kafka.common.utils.Utils),
// seed 0x9747b28c.
func murmur2(data []byte) uint32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	h := uint32(seed) ^ uint32(len(data))
	n := len(data) / 4
	for i := range n {
		k := uint32(data[i*4]) | uint32(data[i*4+1])<<8 | uint32(data[i*4+2])<<16 | uint32(data[i*4+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := data[n*4:]
	switch len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
