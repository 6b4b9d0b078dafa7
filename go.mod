module github.com/nanomdm/nanomdm

go 1.26.8

require (
	github.com/go-kit/log v0.2.1
	github.com/go-sql-driver/mysql v1.10.1
	github.com/groob/plist v0.0.0-20220217120414-63fa881b19a5
	github.com/lib/pq v1.12.3
	github.com/smallstep/pkcs7 v0.2.3
	golang.org/x/net v0.62.0
)

require (
	filippo.io/edwards25519 v1.2.0 // indirect
	github.com/go-logfmt/logfmt v0.5.1 // indirect
	golang.org/x/text v0.43.0 // indirect
)
