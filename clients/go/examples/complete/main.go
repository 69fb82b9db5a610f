// Command complete asks the gateway at $SWITCHBOARD_TARGET for one completion and prints its text.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"switchboard.dev/clients/go/switchboard"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Plaintext, as to a gateway on loopback; WithTLS(nil) for one across a network.
	client, err := switchboard.Dial(ctx, os.Getenv("SWITCHBOARD_TARGET"),
		switchboard.WithAPIKey(os.Getenv("SWITCHBOARD_API_KEY")), switchboard.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	resp, err := client.Complete(ctx, switchboard.Request("chat", switchboard.User("Say hello.")))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.GetMessage().GetContent())
}
