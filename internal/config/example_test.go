package config_test

import (
	"fmt"

	"github.com/trainhook/trainhook/internal/config"
)

func ExampleLoad() {
	env := map[string]string{
		"APP_URL":                  "https://trainhook.example.com/",
		"REPLICATE_WEBHOOK_SECRET": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
		"PORT":                     "3000",
	}
	c, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.WebhookMode, c.Addr, c.WebhookURL)
	fmt.Println(c.ModeReason)
	// Output:
	// true :3000 https://trainhook.example.com/api/webhooks/replicate/completed
	// APP_URL is https://trainhook.example.com: webhooks go to https://trainhook.example.com/api/webhooks/replicate/completed, and trainhook polls only to reconcile trainings whose webhook never came
}

func ExampleLoad_problems() {
	env := map[string]string{"TRAINHOOK_MAX_BODY": "ten", "PORT": "web", "TRAINHOOK_SECRET_KEY": "hunter2"}
	_, err := config.Load(func(k string) string { return env[k] })
	fmt.Println(err)
	// Output:
	// PORT="web": want a port number from 0 to 65535, such as 8080
	// TRAINHOOK_MAX_BODY="ten": want a size in bytes such as 10485760 or 10MiB
	// TRAINHOOK_SECRET_KEY (secret, not shown): want at least 32 characters, got 7 (make one with: openssl rand -base64 32), or leave it unset to keep the key in the database
}

// A command-line flag wins over the environment by wrapping getenv.
func ExampleOverride() {
	env := map[string]string{"ADDR": ":8080", "TRAINHOOK_LOG_LEVEL": "debug"}
	flags := map[string]string{"ADDR": "127.0.0.1:9000"} // from serve --addr
	c, err := config.Load(config.Override(func(k string) string { return env[k] }, flags))
	fmt.Println(c.Addr, c.LogLevel, err)
	// Output: 127.0.0.1:9000 DEBUG <nil>
}
