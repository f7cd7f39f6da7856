// Command produce enqueues uploads.TransferFile jobs from Go by the wire contract alone.
//
// Usage: JOBS_AMQP_URL=amqp://... produce EXCHANGE ROUTING_KEY JOB [PATH SIZE NAME CONTENT_TYPE]...
//
// The broker URL comes from the environment, not the command line, where its password would
// show in the process list; without JOBS_AMQP_URL it is the local broker as guest.
//
// The package example.invalid/uploads is what protoc-gen-go generates from
// examples/upload-server/proto/uploads.proto (its go_package). Nothing here comes from the Rust
// framework: amqp091-go speaks AMQP, google.golang.org/protobuf encodes.
//
// It publishes one job per group of four arguments, then the bodies of badBodies, each
// persistent, mandatory and confirmed, and prints one line per message: "ok <message id>" for
// the jobs in argument order, then "bad <message id> <what is wrong>". It exits 1 when the
// broker nacks or returns a message, or does not confirm it within 30 seconds.
package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/protobuf/proto"

	"example.invalid/uploads"
)

// badBodies are not a TransferFile: the worker sends them to the error queue as "decode".
// Only bodies that every protobuf library rejects (a length-delimited value where a varint
// field is expected is an unknown field to some libraries but an error to prost).
var badBodies = []struct {
	what string
	body []byte
}{
	// Field 1 (path) announced as 100 bytes with 3 behind it.
	{"truncated", []byte{0x0a, 0x64, 'a', 'b', 'c'}},
	// Field 3 (name) holding bytes that are not UTF-8, which proto3 strings must be.
	{"not-utf-8", []byte{0x1a, 0x02, 0xff, 0xfe}},
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "produce:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 3 || (len(args)-3)%4 != 0 {
		return fmt.Errorf("usage: produce EXCHANGE ROUTING_KEY JOB [PATH SIZE NAME CONTENT_TYPE]...")
	}
	exchange, routingKey, job, fields := args[0], args[1], args[2], args[3:]

	conn, err := amqp.Dial(brokerURL())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("confirm mode: %w", err)
	}
	// The library delivers a message's basic.return before its ack, both from one goroutine:
	// once the ack is here, a return of the same message is already in its (buffered) channel.
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1))
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	p := publisher{ch: ch, confirms: confirms, returns: returns, exchange: exchange, routingKey: routingKey, job: job}

	for i := 0; i < len(fields); i += 4 {
		size, err := strconv.ParseUint(fields[i+1], 10, 64)
		if err != nil {
			return fmt.Errorf("size %q: %w", fields[i+1], err)
		}
		file := &uploads.TransferFile{Path: fields[i], Size: size, Name: fields[i+2], ContentType: fields[i+3]}
		body, err := proto.Marshal(file)
		if err != nil {
			return err
		}
		id, err := p.publish(body)
		if err != nil {
			return err
		}
		fmt.Println("ok", id)
	}
	for _, bad := range badBodies {
		if proto.Unmarshal(bad.body, &uploads.TransferFile{}) == nil {
			return fmt.Errorf("the %s body decodes in Go: it would not test the error queue", bad.what)
		}
		id, err := p.publish(bad.body)
		if err != nil {
			return err
		}
		fmt.Println("bad", id, bad.what)
	}
	return nil
}

type publisher struct {
	ch                        *amqp.Channel
	confirms                  <-chan amqp.Confirmation
	returns                   <-chan amqp.Return
	exchange, routingKey, job string
}

// publish sends one job message by the wire contract and waits for the broker's confirm.
func (p publisher) publish(body []byte) (string, error) {
	id, err := messageID()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = p.ch.PublishWithContext(ctx, p.exchange, p.routingKey, true /* mandatory */, false, amqp.Publishing{
		ContentType:  "application/x-protobuf",
		Type:         p.job, // the job name: the worker checks it against the queue's job
		MessageId:    id,    // unique; kept across retries, the idempotency key
		Timestamp:    time.Now(),
		DeliveryMode: amqp.Persistent,
		Body:         body,
		// No x-jobs-attempt header: missing means attempt 1.
	})
	if err != nil {
		return "", fmt.Errorf("publish %s: %w", id, err)
	}
	select {
	case confirm, open := <-p.confirms:
		if !open {
			return "", fmt.Errorf("publish %s: the channel closed before the confirm", id)
		}
		if !confirm.Ack {
			return "", fmt.Errorf("publish %s: the broker nacked it", id)
		}
	case <-ctx.Done():
		return "", fmt.Errorf("publish %s: no confirm within 30 s", id)
	}
	select {
	case returned := <-p.returns:
		return "", fmt.Errorf("publish %s: returned unroutable (%d %s)", returned.MessageId, returned.ReplyCode, returned.ReplyText)
	default:
	}
	return id, nil
}

// brokerURL is JOBS_AMQP_URL, or the local broker as guest.
func brokerURL() string {
	if url := os.Getenv("JOBS_AMQP_URL"); url != "" {
		return url
	}
	return "amqp://guest:guest@127.0.0.1:5672/%2f"
}

// messageID is a random (version 4) UUID: unique is all the contract asks.
func messageID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
