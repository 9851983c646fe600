package wire

// SQLSTATE codes pgswitch itself sends, named as in PostgreSQL's
// src/backend/utils/errcodes.txt. Never invent a code: pick the closest one.
const (
	CodeSuccessfulCompletion              = "00000"
	CodeConnectionException               = "08000"
	CodeConnectionDoesNotExist            = "08003"
	CodeConnectionFailure                 = "08006"
	CodeSQLClientUnableToEstablishSQLConn = "08001"
	CodeProtocolViolation                 = "08P01"
	CodeFeatureNotSupported               = "0A000"
	CodeInvalidAuthorizationSpecification = "28000"
	CodeInvalidPassword                   = "28P01"
	CodeInvalidCatalogName                = "3D000"
	CodeReadOnlySQLTransaction            = "25006"
	CodeInFailedSQLTransaction            = "25P02"
	CodeSyntaxError                       = "42601"
	CodeInsufficientPrivilege             = "42501"
	CodeUndefinedObject                   = "42704"
	CodeInvalidSQLStatementName           = "26000"
	CodeDuplicatePreparedStatement        = "42P05"
	CodeTooManyConnections                = "53300"
	CodeQueryCanceled                     = "57014"
	CodeAdminShutdown                     = "57P01"
	CodeCannotConnectNow                  = "57P03"
	CodeIdleSessionTimeout                = "57P05"
	CodeIdleInTransactionSessionTimeout   = "25P03"
	CodeInternalError                     = "XX000"
	CodeObjectNotInPrerequisiteState      = "55000"
	CodeConfigFileError                   = "F0000"
	CodeInvalidParameterValue             = "22023"
	CodeCachedPlanMustNotChangeResultType = "0A000"
)
