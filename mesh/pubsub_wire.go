package mesh

import (
	"encoding/binary"
	"strconv"
	"strings"
)

// Pub-sub on the wire (see pubsub.go for the semantics):
//
//   - kindPublish, one-way on the reliable session: [topic len u8][topic][payload].
//     The receiver hands it to each of its plain (not queue) subscriptions
//     whose pattern matches.
//   - a queue delivery or a Request is an internal request (tableInternal,
//     internalTopic): [flags u8][group len u8][group][topic len u8][topic][payload];
//     flags bit 0: a Request (the answer carries the handler's reply). An
//     empty group means any subscription of the node that matches. The
//     answer (statusOK) is [code u8][reply or error text]; a draining node
//     answers statusDraining.
//   - an interest push is an internal request (internalInterest):
//     [incarnation u64][interest record]; the answer is empty.
//   - the interest record: [version u64][count u16]{[pattern len u8][pattern][group len u8][group]}.
//   - the node's MARS value topicsValue holds the same as text, readable in
//     the dashboard and GetNodeValue: the version, then a line per entry,
//     "pattern" or "pattern group" (neither has white space).

// kindPublish carries a published message to a subscriber node.
const kindPublish byte = 0x11

// Internal commands of pub-sub (tableInternal).
const (
	internalTopic    uint16 = 2 // a queue delivery or a Request
	internalInterest uint16 = 3 // an interest push
)

// topicsValue is the node value (MARS record) carrying a node's interest.
const topicsValue = "_mesh.topics"

// topicFlagRequest marks a delivery that wants a reply.
const topicFlagRequest byte = 1

// Answer codes of a queue delivery or Request.
const (
	topicTaken   byte = 0 // queued for a subscription (a Request: the reply follows)
	topicNoSub   byte = 1 // no matching subscription: not taken
	topicSlow    byte = 2 // the subscription's pending limit is reached: not taken
	topicFailed  byte = 3 // a Request's handler failed: error text follows
	topicNoReply byte = 4 // a Request's handler returned without Respond
)

func appendPublish(b []byte, topic string) []byte {
	b = append(b, byte(len(topic)))
	return append(b, topic...)
}

// parsePublish splits a kindPublish message; the topic is checked.
func parsePublish(p []byte) (topic string, payload []byte, err error) {
	raw, payload, err := splitPublish(p)
	if err != nil || checkTopic(string(raw)) != nil {
		return "", nil, errMalformed
	}
	return string(raw), payload, nil
}

// splitPublish splits a kindPublish message; the topic is not checked.
func splitPublish(p []byte) (topic, payload []byte, err error) {
	if len(p) < 1 || len(p) < 1+int(p[0]) {
		return nil, nil, errMalformed
	}
	return p[1 : 1+int(p[0])], p[1+int(p[0]):], nil
}

func appendTopicReq(b []byte, flags byte, group, topic string) []byte {
	b = append(b, flags, byte(len(group)))
	b = append(b, group...)
	b = append(b, byte(len(topic)))
	return append(b, topic...)
}

type topicReq struct {
	flags   byte
	group   string
	topic   string
	payload []byte
}

// parseTopicReq reads a queue delivery or Request; names are checked.
func parseTopicReq(p []byte) (topicReq, error) {
	if len(p) < 1 {
		return topicReq{}, errMalformed
	}
	r := topicReq{flags: p[0]}
	var err error
	if r.group, p, err = readShort(p[1:]); err != nil || r.group != "" && checkGroup(r.group) != nil {
		return topicReq{}, errMalformed
	}
	if r.topic, p, err = readShort(p); err != nil || checkTopic(r.topic) != nil {
		return topicReq{}, errMalformed
	}
	r.payload = p
	return r, nil
}

// readShort reads [length u8][bytes] as a string.
func readShort(p []byte) (string, []byte, error) {
	if len(p) < 1 || len(p) < 1+int(p[0]) {
		return "", nil, errMalformed
	}
	return string(p[1 : 1+int(p[0])]), p[1+int(p[0]):], nil
}

// interestEntry is one pattern a node subscribes to, in a queue group or
// not (group "").
type interestEntry struct {
	pattern string
	group   string
}

// maxInterest bounds the distinct (pattern, group) entries of one node,
// so its record fits in its MARS values (at most 64 KiB) with room left.
const maxInterest = 128

func appendInterest(b []byte, ver uint64, entries []interestEntry) []byte {
	b = binary.BigEndian.AppendUint64(b, ver)
	b = binary.BigEndian.AppendUint16(b, uint16(len(entries)))
	for _, e := range entries {
		b = append(b, byte(len(e.pattern)))
		b = append(b, e.pattern...)
		b = append(b, byte(len(e.group)))
		b = append(b, e.group...)
	}
	return b
}

// parseInterest reads an interest record; every pattern and group is
// checked, and the count is bounded by maxInterest.
func parseInterest(p []byte) (ver uint64, entries []interestEntry, err error) {
	if len(p) < 10 {
		return 0, nil, errMalformed
	}
	ver, count := binary.BigEndian.Uint64(p), int(binary.BigEndian.Uint16(p[8:]))
	if count > maxInterest {
		return 0, nil, errMalformed
	}
	p = p[10:]
	entries = make([]interestEntry, 0, count)
	for range count {
		var e interestEntry
		if e.pattern, p, err = readShort(p); err != nil || checkPattern(e.pattern) != nil {
			return 0, nil, errMalformed
		}
		if e.group, p, err = readShort(p); err != nil || e.group != "" && checkGroup(e.group) != nil {
			return 0, nil, errMalformed
		}
		entries = append(entries, e)
	}
	if len(p) != 0 {
		return 0, nil, errMalformed
	}
	return ver, entries, nil
}

// appendInterestText writes the MARS value form of an interest record.
func appendInterestText(b []byte, ver uint64, entries []interestEntry) []byte {
	b = strconv.AppendUint(b, ver, 10)
	for _, e := range entries {
		b = append(b, '\n')
		b = append(b, e.pattern...)
		if e.group != "" {
			b = append(b, ' ')
			b = append(b, e.group...)
		}
	}
	return b
}

// parseInterestText reads the MARS value form; every pattern and group is
// checked, and the count is bounded by maxInterest.
func parseInterestText(s string) (ver uint64, entries []interestEntry, err error) {
	first, rest, more := strings.Cut(s, "\n")
	if ver, err = strconv.ParseUint(first, 10, 64); err != nil || first != strconv.FormatUint(ver, 10) {
		return 0, nil, errMalformed
	}
	for more {
		var line string
		line, rest, more = strings.Cut(rest, "\n")
		if len(entries) == maxInterest {
			return 0, nil, errMalformed
		}
		var e interestEntry
		var grouped bool
		e.pattern, e.group, grouped = strings.Cut(line, " ")
		if checkPattern(e.pattern) != nil || grouped && checkGroup(e.group) != nil {
			return 0, nil, errMalformed
		}
		entries = append(entries, e)
	}
	return ver, entries, nil
}
