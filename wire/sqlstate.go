package wire

// SQLSTATE codes pgswitch sends or looks for in a server's errors, named
// after their condition names in PostgreSQL's src/backend/utils/errcodes.txt
// (sqlclient_unable_to_establish_sqlconnection:
// CodeSQLClientUnableToEstablishSQLConnection). Never invent a code or a
// name: pick the closest condition, and say the particular case in the
// message (0A000 feature_not_supported is also "cached plan must not change
// result type").
const (
	CodeSuccessfulCompletion                    = "00000"
	CodeConnectionException                     = "08000"
	CodeConnectionDoesNotExist                  = "08003"
	CodeConnectionFailure                       = "08006"
	CodeSQLClientUnableToEstablishSQLConnection = "08001"
	CodeProtocolViolation                       = "08P01"
	CodeFeatureNotSupported                     = "0A000"
	CodeInvalidAuthorizationSpecification       = "28000"
	CodeInvalidPassword                         = "28P01"
	CodeInvalidCatalogName                      = "3D000"
	CodeReadOnlySQLTransaction                  = "25006"
	CodeInFailedSQLTransaction                  = "25P02"
	CodeSyntaxError                             = "42601"
	CodeInsufficientPrivilege                   = "42501"
	CodeUndefinedObject                         = "42704"
	CodeInvalidSQLStatementName                 = "26000"
	CodeDuplicatePreparedStatement              = "42P05"
	CodeTooManyConnections                      = "53300"
	CodeConfigurationLimitExceeded              = "53400"
	CodeQueryCanceled                           = "57014"
	CodeAdminShutdown                           = "57P01"
	CodeCannotConnectNow                        = "57P03"
	CodeIdleSessionTimeout                      = "57P05"
	CodeIdleInTransactionSessionTimeout         = "25P03"
	CodeInternalError                           = "XX000"
	CodeObjectNotInPrerequisiteState            = "55000"
	CodeConfigFileError                         = "F0000"
	CodeSystemError                             = "58000"
	CodeInvalidParameterValue                   = "22023"
)
