// The worker is being built (issue 4); until then this says so rather than pretend.
import Foundation

FileHandle.standardError.write(Data("blitline-bridge: the worker is not built yet\n".utf8))
exit(1)
