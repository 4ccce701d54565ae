package mesh

import (
	"errors"
	"strings"
	"testing"
)

func TestMatchTopic(t *testing.T) {
	for _, c := range []struct {
		pattern, topic string
		want           bool
	}{
		{"a", "a", true},
		{"a", "b", false},
		{"a.b.c", "a.b.c", true},
		{"a.b.c", "a.b", false},
		{"a.b", "a.b.c", false},
		{"a.*.c", "a.b.c", true},
		{"a.*.c", "a.b.d", false},
		{"a.*.c", "a.c", false},
		{"*", "a", true},
		{"*", "a.b", false},
		{"*.*", "a.b", true},
		{"a.>", "a.b", true},
		{"a.>", "a.b.c.d", true},
		{"a.>", "a", false},
		{">", "a", true},
		{">", "a.b.c", true},
		{"a.*.>", "a.b.c", true},
		{"a.*.>", "a.b", false},
		{"chat.eu.*", "chat.eu.lobby", true},
		{"chat.eu.*", "chat.us.lobby", false},
		{"ab.c", "a.bc", false},
	} {
		if err := checkPattern(c.pattern); err != nil {
			t.Fatalf("pattern %q: %v", c.pattern, err)
		}
		if err := checkTopic(c.topic); err != nil {
			t.Fatalf("topic %q: %v", c.topic, err)
		}
		if got := matchTopic(c.pattern, c.topic); got != c.want {
			t.Errorf("matchTopic(%q, %q) = %v, want %v", c.pattern, c.topic, got, c.want)
		}
	}
}

func TestTopicValidation(t *testing.T) {
	long := strings.Repeat("a", MaxTopicLen+1)
	for _, c := range []struct {
		s       string
		pattern bool
		want    string // "" = valid
	}{
		{"a.b", false, ""},
		{"a.*", true, ""},
		{"a.>", true, ""},
		{"", false, "empty topic"},
		{"", true, "empty pattern"},
		{"a..b", false, "empty token"},
		{".a", true, "empty token"},
		{"a.", false, "empty token"},
		{"a.*", false, "wildcard"},
		{"a.>", false, "wildcard"},
		{"a.>.b", true, "'>' before its last token"},
		{"a.b*", true, "inside token"},
		{"a.>b", true, "inside token"},
		{"a b", false, "white space"},
		{long, false, "limit 255"},
		{long, true, "limit 255"},
	} {
		var err error
		if c.pattern {
			err = checkPattern(c.s)
		} else {
			err = checkTopic(c.s)
		}
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q (pattern %v): %v", c.s, c.pattern, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrBadTopic)):
			t.Errorf("%q (pattern %v): got %v, want an ErrBadTopic with %q", c.s, c.pattern, err, c.want)
		}
	}
	for _, g := range []string{"", "a b", strings.Repeat("g", MaxGroupLen+1)} {
		if err := checkGroup(g); !errors.Is(err, ErrBadTopic) {
			t.Errorf("group %q: %v, want ErrBadTopic", g, err)
		}
	}
	if err := checkGroup("workers"); err != nil {
		t.Error(err)
	}
}

func TestPubsubWireRoundTrip(t *testing.T) {
	p := append(appendPublish(nil, "a.b"), "hi"...)
	topic, payload, err := parsePublish(p)
	if err != nil || topic != "a.b" || string(payload) != "hi" {
		t.Fatalf("publish: %q %q %v", topic, payload, err)
	}
	q := append(appendTopicReq(nil, topicFlagRequest, "g", "x.y"), "body"...)
	r, err := parseTopicReq(q)
	if err != nil || r.flags != topicFlagRequest || r.group != "g" || r.topic != "x.y" || string(r.payload) != "body" {
		t.Fatalf("topic request: %+v %v", r, err)
	}
	ents := []interestEntry{{"a.>", ""}, {"b.*", "workers"}}
	ver, got, err := parseInterest(appendInterest(nil, 7, ents))
	if err != nil || ver != 7 || len(got) != 2 || got[0] != ents[0] || got[1] != ents[1] {
		t.Fatalf("interest: %d %v %v", ver, got, err)
	}
	for _, bad := range [][]byte{nil, {5, 'a'}, append(appendPublish(nil, "a.*"), 1)} {
		if _, _, err := parsePublish(bad); err == nil {
			t.Errorf("parsePublish(%q) took it", bad)
		}
	}
	if _, _, err := parseInterest(append(appendInterest(nil, 1, ents), 0)); err == nil {
		t.Error("parseInterest took trailing bytes")
	}
	text := string(appendInterestText(nil, 9, ents))
	if text != "9\na.>\nb.* workers" {
		t.Errorf("text form %q", text)
	}
	ver, got, err = parseInterestText(text)
	if err != nil || ver != 9 || len(got) != 2 || got[0] != ents[0] || got[1] != ents[1] {
		t.Fatalf("interest text: %d %v %v", ver, got, err)
	}
	if v, got, err := parseInterestText("0"); err != nil || v != 0 || len(got) != 0 {
		t.Errorf("empty interest text: %d %v %v", v, got, err)
	}
	for _, bad := range []string{"", "x", "01", "1\n", "1\na..b", "1\na b c", "1\na.>.b"} {
		if _, _, err := parseInterestText(bad); err == nil {
			t.Errorf("parseInterestText(%q) took it", bad)
		}
	}
}

func FuzzPubsubWire(f *testing.F) {
	f.Add(append(appendPublish(nil, "a.b"), "hi"...))
	f.Add(append(appendTopicReq(nil, 1, "g", "x.y"), "body"...))
	f.Add(appendInterest(nil, 3, []interestEntry{{"a.>", ""}, {"b.*", "w"}}))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff})
	f.Add([]byte("3\na.>\nb.* w"))
	f.Fuzz(func(t *testing.T, p []byte) {
		if topic, _, err := parsePublish(p); err == nil && checkTopic(topic) != nil {
			t.Fatalf("parsePublish gave a bad topic %q", topic)
		}
		if r, err := parseTopicReq(p); err == nil {
			if checkTopic(r.topic) != nil || r.group != "" && checkGroup(r.group) != nil {
				t.Fatalf("parseTopicReq gave %+v", r)
			}
		}
		if ver, ents, err := parseInterestText(string(p)); err == nil {
			if len(ents) > maxInterest || string(appendInterestText(nil, ver, ents)) != string(p) {
				t.Fatalf("interest text %q does not round-trip", p)
			}
		}
		if ver, ents, err := parseInterest(p); err == nil {
			if len(ents) > maxInterest {
				t.Fatalf("%d entries", len(ents))
			}
			again := appendInterest(nil, ver, ents)
			if string(again) != string(p) {
				t.Fatalf("interest does not round-trip")
			}
		}
	})
}
