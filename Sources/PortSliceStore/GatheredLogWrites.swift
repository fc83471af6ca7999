import VaporCSQLite

/// A SQLite VFS over the default one ("unix") that gathers what a transaction appends to the
/// write-ahead log and writes it in 64 KiB pieces, where SQLite writes each frame with two
/// calls (its header, then its page).
///
/// Written here because SQLite has no such setting. A batch of 32 acquires appends about 500
/// frames; their thousand `pwrite` calls, each going through ext4's buffered write of the page
/// cache pages it touches, were a fifth of the SQLite writer's time (profiled through HTTP
/// with 32 clients).
///
/// Gathered bytes are written before anything could read them or count on them: before the
/// log is read, synced, truncated or sized, and before its connection touches the shared
/// memory by which other connections learn which frames a commit made (its barrier and
/// locks), so no reader ever finds a frame published and not written. What is still gathered
/// when a process dies belongs to a transaction that had not committed.
enum GatheredLogWrites {
    /// The name to open a connection with (`sqlite3_open_v2`'s last argument).
    static let vfsName = "portslice-gathered"

    /// The most bytes gathered before they are written: more than a batch of acquires appends.
    static let capacity = 4 << 20

    /// Registers the VFS (once; not as the default) and answers its name, or nil when SQLite
    /// has no default VFS to wrap.
    static func register() -> String? { registered ? vfsName : nil }

    private static let registered: Bool = {
        guard let base = sqlite_nio_sqlite3_vfs_find(nil) else { return false }
        let vfs = UnsafeMutablePointer<sqlite3_vfs>.allocate(capacity: 1)
        vfs.initialize(to: base.pointee)
        vfs.pointee.iVersion = min(base.pointee.iVersion, 3)
        vfs.pointee.szOsFile = Int32(realFileOffset) + base.pointee.szOsFile
        vfs.pointee.pNext = nil
        let name = Array(vfsName.utf8CString)
        let storedName = UnsafeMutablePointer<CChar>.allocate(capacity: name.count)
        storedName.initialize(from: name, count: name.count)
        vfs.pointee.zName = UnsafePointer(storedName)
        vfs.pointee.pAppData = UnsafeMutableRawPointer(base)
        vfs.pointee.xOpen = { vfs, name, file, flags, outFlags in
            guard let vfs, let file, let base = vfs.pointee.pAppData?.assumingMemoryBound(to: sqlite3_vfs.self) else { return SQLITE_MISUSE }
            let real = GatheredLogWrites.real(file)
            let code = base.pointee.xOpen(base, name, real, flags, outFlags)
            guard code == SQLITE_OK, real.pointee.pMethods != nil else {
                file.pointee.pMethods = nil
                return code
            }
            let state = FileState()
            if flags & SQLITE_OPEN_WAL != 0, let name {
                state.gathered = Gathered()
                state.file = file
                // The database file whose connection writes this log, so that its shared
                // memory calls write what is gathered first.
                if let database = sqlite_nio_sqlite3_database_file_object(name), database.pointee.pMethods == methods {
                    let databaseState = GatheredLogWrites.state(database)
                    databaseState.log = state
                    state.database = databaseState
                }
            }
            (UnsafeMutableRawPointer(file) + stateOffset).storeBytes(of: Unmanaged.passRetained(state).toOpaque(), as: UnsafeMutableRawPointer.self)
            file.pointee.pMethods = methods
            return SQLITE_OK
        }
        return sqlite_nio_sqlite3_vfs_register(vfs, 0) == SQLITE_OK
    }()

    /// What one open file of this VFS keeps beside the default VFS's file.
    private final class FileState {
        /// A log file's bytes not yet written.
        var gathered: Gathered?
        /// A log's own file (this VFS's), for its database file to write what it gathered.
        var file: UnsafeMutablePointer<sqlite3_file>?
        /// For a database file, its log (while open); for a log, its database file.
        var log: FileState?
        unowned(unsafe) var database: FileState?
    }

    /// Contiguous bytes that start at `offset` in the file.
    private final class Gathered {
        let bytes = UnsafeMutableRawPointer.allocate(byteCount: GatheredLogWrites.capacity, alignment: 16)
        var offset: Int64 = 0
        var count = 0

        deinit { bytes.deallocate() }
    }

    /// Our part of a file comes first: SQLite's `sqlite3_file` header, then our state; the
    /// default VFS's file follows.
    private static let stateOffset = MemoryLayout<sqlite3_file>.stride
    private static let realFileOffset = stateOffset + MemoryLayout<UnsafeMutableRawPointer>.stride

    private static func real(_ file: UnsafeMutablePointer<sqlite3_file>) -> UnsafeMutablePointer<sqlite3_file> {
        (UnsafeMutableRawPointer(file) + realFileOffset).assumingMemoryBound(to: sqlite3_file.self)
    }

    private static func state(_ file: UnsafeMutablePointer<sqlite3_file>) -> FileState {
        Unmanaged<FileState>.fromOpaque((UnsafeMutableRawPointer(file) + stateOffset).load(as: UnsafeMutableRawPointer.self))
            .takeUnretainedValue()
    }

    /// The most bytes handed to the default VFS in one write: it writes at most 128 KiB - 1
    /// per call (it masks the length to 17 bits, so a longer write comes out short, and one
    /// of exactly 128 KiB is taken for a full disk).
    static let mostPerWrite = 64 << 10

    /// Writes what `file` (a log) has gathered. - Returns: SQLite's result code.
    private static func flush(_ state: FileState, _ real: UnsafeMutablePointer<sqlite3_file>) -> Int32 {
        guard let gathered = state.gathered, gathered.count > 0 else { return SQLITE_OK }
        let count = gathered.count
        gathered.count = 0
        var written = 0
        while written < count {
            let size = min(count - written, mostPerWrite)
            let code = real.pointee.pMethods.pointee.xWrite(real, gathered.bytes + written, Int32(size), gathered.offset + Int64(written))
            guard code == SQLITE_OK else { return code }
            written += size
        }
        return SQLITE_OK
    }

    /// Writes what the log of `file` (a database file) has gathered.
    private static func flushLog(of file: UnsafeMutablePointer<sqlite3_file>) -> Int32 {
        guard let log = state(file).log, let gathered = log.gathered, gathered.count > 0, let logFile = log.file else { return SQLITE_OK }
        return flush(log, real(logFile))
    }

    /// Calls the default VFS's method on `file`'s own file, first writing what the file
    /// gathered (nothing, unless it is a log).
    private static func flushed(_ file: UnsafeMutablePointer<sqlite3_file>?, then call: (UnsafeMutablePointer<sqlite3_file>, sqlite3_io_methods) -> Int32) -> Int32 {
        guard let file else { return SQLITE_MISUSE }
        let real = real(file), code = flush(state(file), real)
        return code == SQLITE_OK ? call(real, real.pointee.pMethods.pointee) : code
    }

    /// Calls the default VFS's shared-memory method on `file` (a database file), first writing
    /// what its log gathered.
    private static func logFlushed(_ file: UnsafeMutablePointer<sqlite3_file>?, then call: (UnsafeMutablePointer<sqlite3_file>, sqlite3_io_methods) -> Int32) -> Int32 {
        guard let file else { return SQLITE_MISUSE }
        let real = real(file), code = flushLog(of: file)
        return code == SQLITE_OK ? call(real, real.pointee.pMethods.pointee) : code
    }

    /// Calls the default VFS's method on `file`'s own file.
    private static func passed(_ file: UnsafeMutablePointer<sqlite3_file>?, to call: (UnsafeMutablePointer<sqlite3_file>, sqlite3_io_methods) -> Int32) -> Int32 {
        guard let file else { return SQLITE_MISUSE }
        let real = real(file)
        return call(real, real.pointee.pMethods.pointee)
    }

    /// Each method calls the default VFS's, first writing what is gathered when the call could
    /// read it or publish it.
    nonisolated(unsafe) private static let methods: UnsafePointer<sqlite3_io_methods> = {
        let methods = UnsafeMutablePointer<sqlite3_io_methods>.allocate(capacity: 1)
        methods.initialize(to: sqlite3_io_methods(
            iVersion: 3,
            xClose: { file in
                guard let file else { return SQLITE_MISUSE }
                let state = GatheredLogWrites.state(file), real = GatheredLogWrites.real(file)
                let flushed = flush(state, real)
                state.database?.log = nil
                state.log?.database = nil
                Unmanaged.passUnretained(state).release()
                let closed = real.pointee.pMethods.pointee.xClose(real)
                return flushed == SQLITE_OK ? closed : flushed
            },
            xRead: { file, buffer, amount, offset in flushed(file) { $1.xRead($0, buffer, amount, offset) } },
            xWrite: { file, buffer, amount, offset in
                guard let file, let buffer else { return SQLITE_MISUSE }
                let state = GatheredLogWrites.state(file), real = GatheredLogWrites.real(file)
                guard let gathered = state.gathered else { return real.pointee.pMethods.pointee.xWrite(real, buffer, amount, offset) }
                let size = Int(amount)
                if gathered.count > 0, offset == gathered.offset + Int64(gathered.count), gathered.count + size <= capacity {
                    (gathered.bytes + gathered.count).copyMemory(from: buffer, byteCount: size)
                    gathered.count += size
                    return SQLITE_OK
                }
                let flushed = flush(state, real)
                guard flushed == SQLITE_OK else { return flushed }
                guard size <= capacity else { return real.pointee.pMethods.pointee.xWrite(real, buffer, amount, offset) }
                gathered.bytes.copyMemory(from: buffer, byteCount: size)
                (gathered.offset, gathered.count) = (offset, size)
                return SQLITE_OK
            },
            xTruncate: { file, size in flushed(file) { $1.xTruncate($0, size) } },
            xSync: { file, flags in flushed(file) { $1.xSync($0, flags) } },
            xFileSize: { file, size in flushed(file) { $1.xFileSize($0, size) } },
            xLock: { file, lock in passed(file) { $1.xLock($0, lock) } },
            xUnlock: { file, lock in passed(file) { $1.xUnlock($0, lock) } },
            xCheckReservedLock: { file, reserved in passed(file) { $1.xCheckReservedLock($0, reserved) } },
            xFileControl: { file, operation, argument in flushed(file) { $1.xFileControl($0, operation, argument) } },
            xSectorSize: { file in
                guard let file else { return 0 }
                let real = GatheredLogWrites.real(file)
                return real.pointee.pMethods.pointee.xSectorSize(real)
            },
            xDeviceCharacteristics: { file in
                guard let file else { return 0 }
                let real = GatheredLogWrites.real(file)
                return real.pointee.pMethods.pointee.xDeviceCharacteristics(real)
            },
            xShmMap: { file, page, pageSize, extend, mapped in passed(file) { $1.xShmMap($0, page, pageSize, extend, mapped) } },
            xShmLock: { file, offset, count, flags in logFlushed(file) { $1.xShmLock($0, offset, count, flags) } },
            xShmBarrier: { file in
                guard let file else { return }
                // A barrier comes before the header that publishes a commit's frames is
                // written. It cannot fail: the store's commits sync the log (`synchronous`
                // FULL), which writes every frame first and fails the commit if it cannot.
                _ = flushLog(of: file)
                let real = GatheredLogWrites.real(file)
                real.pointee.pMethods.pointee.xShmBarrier(real)
            },
            xShmUnmap: { file, delete in logFlushed(file) { $1.xShmUnmap($0, delete) } },
            xFetch: { file, offset, amount, page in passed(file) { $1.xFetch($0, offset, amount, page) } },
            xUnfetch: { file, offset, page in passed(file) { $1.xUnfetch($0, offset, page) } }))
        return UnsafePointer(methods)
    }()
}
