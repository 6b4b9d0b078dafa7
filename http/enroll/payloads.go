package enroll

// The payload types of an enrollment profile, in the key names of
// Apple's profile reference (Configuration, com.apple.mdm,
// com.apple.security.scep, com.apple.security.acme,
// com.apple.security.root).

// payload is the part every payload has.
type payload struct {
	PayloadType        string `plist:"PayloadType"`
	PayloadVersion     int    `plist:"PayloadVersion"`
	PayloadIdentifier  string `plist:"PayloadIdentifier"`
	PayloadUUID        string `plist:"PayloadUUID"`
	PayloadDisplayName string `plist:"PayloadDisplayName"`
	PayloadDescription string `plist:"PayloadDescription"`
}

// topPayload is the profile itself (PayloadType Configuration).
type topPayload struct {
	payload
	PayloadScope   string `plist:"PayloadScope"`
	PayloadContent []any  `plist:"PayloadContent"`
}

// mdmPayload is com.apple.mdm.
type mdmPayload struct {
	payload
	IdentityCertificateUUID string   `plist:"IdentityCertificateUUID"`
	ServerURL               string   `plist:"ServerURL"`
	CheckInURL              string   `plist:"CheckInURL,omitempty"`
	Topic                   string   `plist:"Topic"`
	SignMessage             bool     `plist:"SignMessage"`
	CheckOutWhenRemoved     bool     `plist:"CheckOutWhenRemoved"`
	AccessRights            int      `plist:"AccessRights"`
	ServerCapabilities      []string `plist:"ServerCapabilities"`
}

// scepPayload is com.apple.security.scep.
type scepPayload struct {
	payload
	PayloadContent scepContent `plist:"PayloadContent"`
}

type scepContent struct {
	URL       string       `plist:"URL"`
	Challenge string       `plist:"Challenge,omitempty"`
	Subject   [][][]string `plist:"Subject"`
	KeyType   string       `plist:"Key Type"`
	Keysize   int          `plist:"Keysize"`
	KeyUsage  int          `plist:"Key Usage"`
}

// acmePayload is com.apple.security.acme.
type acmePayload struct {
	payload
	DirectoryURL     string       `plist:"DirectoryURL"`
	ClientIdentifier string       `plist:"ClientIdentifier"`
	KeyType          string       `plist:"KeyType"`
	KeySize          int          `plist:"KeySize"`
	HardwareBound    bool         `plist:"HardwareBound"`
	Attest           bool         `plist:"Attest"`
	Subject          [][][]string `plist:"Subject"`
	ExtendedKeyUsage []string     `plist:"ExtendedKeyUsage"`
}

// certPayload is com.apple.security.root.
type certPayload struct {
	payload
	PayloadCertificateFileName string `plist:"PayloadCertificateFileName"`
	PayloadContent             []byte `plist:"PayloadContent"`
}
